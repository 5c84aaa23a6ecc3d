// Signing up, in and out; the pages the mailed links open.

import { AUTH_FIELDS, currentUser, gql, signedIn } from '../api.js';
import { field, form, h } from '../dom.js';

export function login(main) {
  main.append(
    form(async (data) => {
      const { login: payload } = await gql(`mutation Login($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`, {
        input: { email: data.get('email'), password: data.get('password') },
      });
      signedIn(payload);
      window.location.hash = '#/tools';
    },
    field('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true }),
    field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    h('button', { type: 'submit' }, 'Sign in')),
    h('p', {}, 'New here? ', h('a', { href: '#/signup' }, 'Create an account'), '.'),
    h('h2', {}, 'Forgot your password?'),
    form(async (data) => {
      await gql('mutation Forgot($email: String!) { requestPasswordReset(email: $email) }', { email: data.get('email') });
      return h('p', { class: 'ok' }, 'If the address has an account, a link to choose a new password is on its way.');
    },
    field('Email', { name: 'email', type: 'email', autocomplete: 'email' }),
    h('button', { type: 'submit', class: 'plain' }, 'Mail me a link')),
  );
}

export function signup(main) {
  main.append(
    form(async (data) => {
      const { register } = await gql(`mutation Register($input: RegisterInput!) { register(input: $input) { ${AUTH_FIELDS} } }`, {
        input: { name: data.get('name'), email: data.get('email'), password: data.get('password') },
      });
      signedIn(register);
      window.location.hash = '#/plan?welcome=1';
    },
    field('Name', { name: 'name', autocomplete: 'name', required: true }),
    field('Email', { name: 'email', type: 'email', autocomplete: 'email', required: true }),
    field('Password (at least 12 characters)', { name: 'password', type: 'password', autocomplete: 'new-password', required: true }),
    h('button', { type: 'submit' }, 'Create the account')),
    h('p', {}, 'Already have one? ', h('a', { href: '#/login' }, 'Sign in'), '.'),
  );
}

export async function verify(main, params) {
  await gql('mutation Verify($token: String!) { verifyEmail(token: $token) }', { token: params.get('token') ?? '' });
  const user = currentUser();
  if (user) user.emailVerified = true;
  main.append(
    h('p', { class: 'ok', role: 'status' }, 'Your email address is verified.'),
    h('p', {}, user ? h('a', { href: '#/tools' }, 'Go to the tools') : h('a', { href: '#/login' }, 'Sign in')),
  );
}

export function reset(main, params) {
  main.append(form(async (data) => {
    await gql('mutation Reset($token: String!, $password: String!) { resetPassword(token: $token, newPassword: $password) }', {
      token: params.get('token') ?? '', password: data.get('password'),
    });
    return h('p', { class: 'ok' }, 'Your password is changed. ', h('a', { href: '#/login' }, 'Sign in'), '.');
  },
  field('New password (at least 12 characters)', { name: 'password', type: 'password', autocomplete: 'new-password' }),
  h('button', { type: 'submit' }, 'Change the password')));
}
