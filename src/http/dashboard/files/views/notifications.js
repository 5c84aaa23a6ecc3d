// Notifications (marked read all at once) and the preferences that exist: theme and time zone.

import { gql } from '../api.js';
import { field, form, format, h } from '../dom.js';

export async function view(main) {
  const { notifications, preferences } = await gql(`query { notifications(first: 30) { nodes { id title body createdAt readAt } }
    preferences { theme timeZone language } }`);
  const list = h('ul', { 'aria-label': 'Notifications' }, ...notifications.nodes.map((n) => h('li', {},
    h('strong', {}, n.title), n.readAt ? '' : ' (new)', h('br'), n.body, h('br'), h('span', { class: 'muted' }, format.time(n.createdAt)))));
  main.append(
    notifications.nodes.length ? list : h('p', {}, 'Nothing yet.'),
    h('button', { type: 'button', class: 'plain', onclick: async () => {
      await gql('mutation { markAllNotificationsRead }');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } }, 'Mark all as read'),
    h('h2', {}, 'Preferences'),
    form(async (data) => {
      await gql('mutation Prefs($input: PreferencesInput!) { updatePreferences(input: $input) { theme } }', {
        input: { theme: data.get('theme'), timeZone: data.get('timeZone') },
      });
      return h('p', { class: 'ok' }, 'Saved.');
    },
    field('Theme', { as: 'select', name: 'theme', options: [['SYSTEM', 'As the system'], ['LIGHT', 'Light'], ['DARK', 'Dark']] }),
    field('Time zone', { name: 'timeZone', value: preferences.timeZone }),
    h('button', { type: 'submit' }, 'Save')),
  );
  const theme = main.querySelector('select[name="theme"]');
  if (theme) theme.value = preferences.theme;
}
