// Admin > Users: list, create, deactivate.

import { api, can, current, listAll, withConfirmation } from '../api.js';
import { add, badge, checkbox, confirmDialog, errorBox, field, fill, fmtDate, formDialog, h, pageHeader, showError, table, td, toast } from '../ui.js';

const ROLES = [['member', 'Member'], ['token_manager', 'Token manager'], ['admin', 'Administrator']];

export async function renderUsers(main) {
  const errorSlot = h('div');
  const listSlot = h('div');
  const canCreate = can('users.create');
  const canDeactivate = can('users.deactivate');
  const canReset = can('users.reset_two_factor');
  fill(main, 
    ...pageHeader('Users', 'People and service accounts of the tenant.'),
    h('div', { class: 'toolbar' },
      canCreate ? h('button', { type: 'button', class: 'primary', onclick: () => create() }, 'Add user') : null,
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    errorSlot, listSlot);

  async function load() {
    showError(errorSlot, null);
    try {
      const users = (await listAll('/users')).filter((u) => !u.is_system);
      const rows = users.map((u) => h('tr', { 'data-id': u.id },
        td('Username', h('strong', {}, u.username), u.id === current.me.user.id ? h('span', { class: 'sub' }, 'you') : null),
        td('Name', u.display_name || ''),
        td('Email', u.email || '—'),
        td('Kind', u.kind === 'api' ? 'Service account' : 'Person'),
        td('Role', ROLES.find(([r]) => r === u.role)?.[1] || u.role),
        td('API access', u.api_access ? badge('Allowed', 'ok') : badge('Denied', 'off')),
        td('Two-factor', u.kind !== 'person' ? '—' : (u.two_factor ? badge('On', 'ok') : badge('Off', 'off'))),
        td('Status', u.active ? badge('Active', 'ok') : badge('Deactivated', 'off')),
        td('Created', fmtDate(u.created_at)),
        h('td', { class: 'row-actions' },
          canReset && u.two_factor && u.id !== current.me.user.id
            ? h('button', { type: 'button', class: 'small', 'aria-label': `Reset two-factor sign-in of ${u.username}`, onclick: () => resetTwoFactor(u) }, 'Reset 2FA')
            : null,
          canDeactivate && u.active && u.id !== current.me.user.id
            ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Deactivate ${u.username}`, onclick: () => deactivate(u) }, 'Deactivate')
            : null)));
      fill(listSlot, table(
        ['Username', 'Name', 'Email', 'Kind', 'Role', 'API access', 'Two-factor', 'Status', 'Created', h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions'))],
        rows, { caption: 'Users of the tenant' }));
    } catch (err) { showError(errorSlot, err); }
  }

  async function create() {
    const username = h('input', { type: 'text', name: 'username', required: true, maxlength: 64, autocomplete: 'off', autocapitalize: 'none' });
    const displayName = h('input', { type: 'text', name: 'display_name', maxlength: 200 });
    const email = h('input', { type: 'email', name: 'email', maxlength: 254 });
    const kind = h('select', { name: 'kind' }, h('option', { value: 'person' }, 'Person'), h('option', { value: 'api' }, 'Service account (for unattended scripts)'));
    const role = h('select', { name: 'role' }, ROLES.map(([v, l]) => h('option', { value: v }, l)));
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', maxlength: 256 });
    const apiAccess = checkbox('API access (required for any API call)', { name: 'api_access', checked: true });
    const user = await formDialog({
      title: 'Add a user',
      submitLabel: 'Add user',
      build: (body) => add(body, 
        h('div', { class: 'row' }, field('Username', username), field('Display name', displayName)),
        field('Email', email),
        h('div', { class: 'row' }, field('Kind', kind), field('Role', role)),
        field('Password', password, 'Optional: without a password the user cannot sign in (e.g. a service account that only holds application tokens).'),
        apiAccess.el),
      submit: () => {
        const body = { username: username.value.trim(), kind: kind.value, role: role.value, api_access: apiAccess.input.checked };
        if (displayName.value.trim()) body.display_name = displayName.value.trim();
        if (email.value.trim()) body.email = email.value.trim();
        if (password.value) body.password = password.value;
        return api.post('/users', body);
      },
    });
    if (user) { toast(`User ${user.username} added.`); await load(); }
  }

  async function resetTwoFactor(u) {
    const ok = await confirmDialog({
      title: `Reset two-factor sign-in of ${u.username}?`,
      message: 'Their authenticator app and recovery codes stop working; they sign in with the password alone (or set up a new app where the policy requires it). Do this when they lost their app.',
      confirmLabel: 'Reset', danger: true,
    });
    if (!ok) return;
    try {
      await withConfirmation(() => api.post(`/users/${u.id}/two-factor/reset`));
      toast(`Two-factor sign-in of ${u.username} is reset.`);
      await load();
    } catch (err) { if (err?.name !== 'Cancelled') fill(errorSlot, errorBox(err)); }
  }

  async function deactivate(u) {
    const ok = await confirmDialog({
      title: `Deactivate ${u.username}?`,
      message: 'The user can no longer sign in, and every token of theirs stops working until an administrator reactivates them.',
      confirmLabel: 'Deactivate', danger: true,
    });
    if (!ok) return;
    try {
      await api.post(`/users/${u.id}/deactivate`);
      toast(`${u.username} is deactivated.`);
      await load();
    } catch (err) { fill(errorSlot, errorBox(err)); }
  }

  await load();
}
