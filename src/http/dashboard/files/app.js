// The shell: navigation, and one view per location (`#/tools`, `#/usage`, …), each in `views/`.

import { currentUser, onSession, signOut } from './api.js';
import { errorBox, h } from './dom.js';
import * as account from './views/account.js';
import * as admin from './views/admin.js';
import * as keys from './views/keys.js';
import * as notifications from './views/notifications.js';
import * as plan from './views/plan.js';
import * as tools from './views/tools.js';
import * as usage from './views/usage.js';

const VIEWS = {
  login: { title: 'Sign in', render: account.login, open: true },
  signup: { title: 'Create an account', render: account.signup, open: true },
  verify: { title: 'Verify your email', render: account.verify, open: true },
  reset: { title: 'Choose a new password', render: account.reset, open: true },
  tools: { title: 'Tools', render: tools.view, nav: true },
  usage: { title: 'Usage', render: usage.view, nav: true },
  plan: { title: 'Plan', render: plan.view, nav: true },
  keys: { title: 'API keys', render: keys.view, nav: true },
  notifications: { title: 'Notifications', render: notifications.view, nav: true },
  admin: { title: 'Admin', render: admin.view, nav: true, admin: true },
};

let leave = null;
let notice = '';

function location() {
  const [name, query] = window.location.hash.replace(/^#\/?/, '').split('?');
  return { name: name || (currentUser() ? 'tools' : 'login'), params: new URLSearchParams(query ?? '') };
}

function navigation(user, current) {
  const nav = document.getElementById('nav');
  if (!user) {
    nav.replaceChildren(h('a', { href: '#/login' }, 'Sign in'), h('a', { href: '#/signup' }, 'Create an account'));
    return;
  }
  const links = Object.entries(VIEWS)
    .filter(([, view]) => view.nav && (!view.admin || user.role === 'ADMIN'))
    .map(([name, view]) => h('a', { href: `#/${name}`, 'aria-current': name === current ? 'page' : false }, view.title));
  nav.replaceChildren(
    ...links,
    h('span', { class: 'muted' }, user.name),
    h('button', { class: 'plain', type: 'button', onclick: () => signOut() }, 'Sign out'),
  );
}

async function render() {
  leave?.();
  leave = null;
  const { name, params } = location();
  const user = currentUser();
  const view = VIEWS[name] ?? VIEWS.tools;
  if (!view.open && !user) {
    window.location.hash = '#/login';
    return;
  }
  navigation(user, name);
  document.title = `${view.title} · Joyfull Hub`;
  const main = document.getElementById('main');
  main.replaceChildren(h('h1', {}, view.title));
  if (notice) {
    main.append(h('p', { class: 'notice', role: 'alert' }, notice));
    notice = '';
  }
  try {
    leave = (await view.render(main, params, user)) ?? null;
  } catch (error) {
    main.append(errorBox(error));
  }
}

onSession((session, reason) => {
  if (session) return;
  notice = reason ?? '';
  if (window.location.hash.startsWith('#/login')) render();
  else window.location.hash = '#/login';
});
window.addEventListener('hashchange', render);
render();
