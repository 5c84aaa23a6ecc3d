// Administrators: platform statistics, users (search, suspend, reactivate) and the tool catalogue.

import { gql } from '../api.js';
import { errorBox, field, format, h } from '../dom.js';

const STATS = `query Stats($from: DateTime) { admin { stats(from: $from) { invocations tokens errorRate
  users { total active new } } } tools(first: 100) { nodes { id name slug minTier enabled streams } } }`;
const USERS = `query Users($search: String) { admin { users(first: 50, search: $search) { totalCount
  nodes { id name email role status subscription { plan { name } } } } } }`;

export async function view(main) {
  const from = new Date(Date.now() - 30 * 86_400_000).toISOString();
  const { admin, tools } = await gql(STATS, { from });
  const stats = admin.stats;
  const users = h('tbody');
  const message = h('div', { 'aria-live': 'polite' });
  const load = async (search) => {
    try {
      const { admin: found } = await gql(USERS, { search: search || null });
      users.replaceChildren(...found.users.nodes.map((user) => h('tr', {},
        h('td', {}, user.name), h('td', {}, user.email), h('td', {}, user.role), h('td', {}, user.subscription?.plan.name ?? '—'),
        h('td', {}, user.status),
        h('td', {}, h('button', { type: 'button', class: 'plain', onclick: () => setStatus(user, user.status === 'ACTIVE' ? 'SUSPENDED' : 'ACTIVE') },
          user.status === 'ACTIVE' ? `Suspend ${user.name}` : `Reactivate ${user.name}`)))));
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  };
  const setStatus = async (user, status) => {
    message.replaceChildren();
    try {
      await gql('mutation SetStatus($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id } }', { id: user.id, input: { status } });
      await load(search.querySelector('input').value.trim());
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  };
  const search = field('Search users', { type: 'search', placeholder: 'name or email' });
  let typing = null;
  search.querySelector('input').addEventListener('input', (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => load(event.target.value.trim()), 250);
  });
  main.append(
    h('h2', {}, 'Last 30 days'),
    h('div', { class: 'totals' },
      h('p', {}, 'Calls: ', h('strong', {}, format.number(stats.invocations))),
      h('p', {}, 'Tokens: ', h('strong', {}, format.number(stats.tokens))),
      h('p', {}, 'Errors: ', h('strong', {}, `${(stats.errorRate * 100).toFixed(1)} %`)),
      h('p', {}, 'Users: ', h('strong', {}, `${format.number(stats.users.total)} (${format.number(stats.users.new)} new, ${format.number(stats.users.active)} calling)`))),
    h('h2', {}, 'Users'),
    search, message,
    h('div', { class: 'table' }, h('table', {},
      h('thead', {}, h('tr', {}, ...['Name', 'Email', 'Role', 'Plan', 'Status', ''].map((c) => h('th', { scope: 'col' }, c)))),
      users)),
    h('h2', {}, 'Tools'),
    h('div', { class: 'table' }, h('table', {},
      h('thead', {}, h('tr', {}, ...['Name', 'Slug', 'Plan', 'Enabled', 'Streams'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...tools.nodes.map((t) => h('tr', {}, h('td', {}, t.name), h('td', {}, t.slug), h('td', {}, t.minTier),
        h('td', {}, t.enabled ? 'yes' : 'no'), h('td', {}, t.streams ? 'yes' : 'no')))))),
  );
  await load('');
}
