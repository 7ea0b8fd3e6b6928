// My profile: the user (left), the contact (right), password change and a pointer to the tokens.

import { api, current } from '../api.js';
import { badge, busy, field, fill, fmtDateTime, h, pageHeader, showError, toast } from '../ui.js';
import { twoFactorCard } from './two-factor.js';

const ROLE_NAMES = { admin: 'Administrator', token_manager: 'Token manager', member: 'Member' };

export async function renderProfile(main) {
  const me = await api.get('/users/me');
  current.me = me;
  const user = me.user;
  const refresh = () => renderProfile(main);
  if (me.two_factor_enrolment_required) {
    // The session can only enrol until it does.
    fill(main, ...pageHeader('Set up two-factor sign-in', 'Your tenant requires a second factor for every sign-in.'),
      twoFactorCard(me, async () => { await refresh(); if (!current.me.two_factor_enrolment_required) location.hash = '#/tokens'; }));
    return;
  }

  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Username'), h('dd', {}, user.username),
    h('dt', {}, 'Tenant'), h('dd', {}, me.tenant),
    h('dt', {}, 'Role'), h('dd', {}, ROLE_NAMES[me.role] || me.role),
    h('dt', {}, 'Kind'), h('dd', {}, user.kind === 'api' ? 'Service account' : 'Person'),
    h('dt', {}, 'API access'), h('dd', {}, user.api_access ? badge('Allowed', 'ok') : badge('Denied', 'off')),
    h('dt', {}, 'Member since'), h('dd', {}, fmtDateTime(user.created_at)),
    h('dt', {}, 'Signed in with'), h('dd', {}, me.token_kind === 'session' ? 'a login session' : `a ${me.token_kind} token`,
      me.token_expires_at ? ` until ${fmtDateTime(me.token_expires_at)}` : ''),
  );

  const displayName = h('input', { type: 'text', name: 'display_name', autocomplete: 'name', required: true, maxlength: 200 });
  displayName.value = user.display_name || '';
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', maxlength: 254 });
  email.value = user.email || '';
  const contactErrors = h('div');
  const contact = h('form', { class: 'card', 'aria-labelledby': 'contact-h' },
    h('h2', { id: 'contact-h' }, 'Contact'), contactErrors,
    field('Display name', displayName),
    field('Email', email),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save contact')),
  );
  contact.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(contactErrors, null);
    try {
      const updated = await busy(contact, () => api.patch('/users/me', { display_name: displayName.value.trim(), email: email.value.trim() }));
      current.me.user = updated;
      toast('Contact saved.');
    } catch (err) { showError(contactErrors, err); }
  });

  const currentPw = h('input', { type: 'password', name: 'current_password', autocomplete: 'current-password', required: true });
  const newPw = h('input', { type: 'password', name: 'new_password', autocomplete: 'new-password', required: true });
  const againPw = h('input', { type: 'password', name: 'new_password_again', autocomplete: 'new-password', required: true });
  const pwErrors = h('div');
  const password = h('form', { class: 'card', 'aria-labelledby': 'pw-h' },
    h('h2', { id: 'pw-h' }, 'Change password'), pwErrors,
    h('div', { class: 'row' }, field('Current password', currentPw), field('New password', newPw), field('New password again', againPw)),
    h('p', { class: 'muted' }, 'Your other login sessions end when the password changes. Tokens keep working.'),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Change password')),
  );
  password.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(pwErrors, null);
    if (newPw.value !== againPw.value) {
      pwErrors.append(h('div', { class: 'error', role: 'alert' }, 'The two new passwords differ.'));
      againPw.focus();
      return;
    }
    try {
      await busy(password, () => api.post('/users/me/password', { current_password: currentPw.value, new_password: newPw.value }));
      password.reset();
      toast('Password changed.');
    } catch (err) { showError(pwErrors, err); }
  });

  fill(main, 
    ...pageHeader('My profile', 'Your account in this tenant and how to reach you.'),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'user-h' }, h('h2', { id: 'user-h' }, 'User'), facts),
      contact),
    h('div', { class: 'gap' }),
    twoFactorCard(me, refresh),
    password,
    h('section', { class: 'card', 'aria-labelledby': 'tok-h' },
      h('h2', { id: 'tok-h' }, 'Personal tokens'),
      h('p', {}, 'Personal tokens let scripts and tools call the API as you, limited to the methods you choose. ',
        h('a', { href: '#/tokens' }, 'Manage your tokens'), '.')),
  );
}
