// API keys: create one with scopes (its secret is shown once, with a copy button), list and revoke.

import { gql } from '../api.js';
import { field, form, format, h } from '../dom.js';

const KEY_FIELDS = 'id name prefix scopes active createdAt lastUsedAt';

export async function view(main, _params, user) {
  const list = h('tbody');
  const load = async () => {
    const { apiKeys } = await gql(`query { apiKeys { ${KEY_FIELDS} } }`);
    list.replaceChildren(...apiKeys.map((key) => h('tr', {},
      h('td', {}, key.name), h('td', {}, h('code', {}, `${key.prefix}…`)), h('td', {}, key.scopes.join(', ')),
      h('td', {}, format.time(key.lastUsedAt)),
      h('td', {}, key.active
        ? h('button', { type: 'button', class: 'plain', onclick: async () => { await gql(`mutation Revoke($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: key.id }); await load(); } }, `Revoke ${key.name}`)
        : 'revoked'))));
  };
  const scopes = ['READ', 'INVOKE', 'MANAGE', ...(user.role === 'ADMIN' ? ['ADMIN'] : [])];
  main.append(
    h('h2', {}, 'New key'),
    form(async (data) => {
      const chosen = scopes.filter((scope) => data.get(`scope-${scope}`));
      const { createApiKey } = await gql(`mutation Create($input: CreateApiKeyInput!) { createApiKey(input: $input) { key apiKey { ${KEY_FIELDS} } } }`, {
        input: { name: data.get('name'), scopes: chosen.length ? chosen : null },
      });
      await load();
      const secret = h('input', { readonly: true, value: createApiKey.key, 'aria-label': 'The new key', id: 'new-key' });
      const copied = h('span', { role: 'status' });
      return h('div', { class: 'notice' },
        h('p', {}, 'Copy the key now: it is shown once and the hub keeps only its hash.'),
        h('div', { class: 'row' }, secret, h('button', { type: 'button', onclick: async () => {
          secret.select();
          try { await navigator.clipboard.writeText(createApiKey.key); copied.textContent = 'Copied.'; } catch { copied.textContent = 'Select the key and copy it.'; }
        } }, 'Copy'), copied));
    },
    field('Name', { name: 'name', required: true }),
    h('fieldset', {}, h('legend', {}, 'Scopes (none: every scope you have)'),
      ...scopes.map((scope) => h('label', {}, h('input', { type: 'checkbox', name: `scope-${scope}`, value: '1' }), ` ${scope}`))),
    h('button', { type: 'submit' }, 'Create the key')),
    h('h2', {}, 'Your keys'),
    h('div', { class: 'table' }, h('table', {},
      h('thead', {}, h('tr', {}, ...['Name', 'Key', 'Scopes', 'Last used', ''].map((c) => h('th', { scope: 'col' }, c)))),
      list)),
  );
  await load();
}
