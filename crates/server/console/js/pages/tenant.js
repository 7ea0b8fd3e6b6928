// Admin > Policy (GET /tenant, PUT /tenant/policy) and Admin > Signing keys (list, rotate).

import { api, can, listAll } from '../api.js';
import { add, badge, busy, checkbox, field, fill, fmtDateTime, formDialog, h, pageHeader, showError, table, td, toast } from '../ui.js';

const NUMBERS = [
  ['max_token_lifetime_days', 'Longest token lifetime (days)', 1, 3650, 'Empty: no cap.'],
  ['session_lifetime_secs', 'Login session lifetime (seconds)', 60, 3600],
  ['password_confirmation_secs', 'Password confirmation lasts (seconds)', 30, 3600],
  ['max_tokens_per_user', 'Tokens per user at most', 1, 10000],
  ['login_max_failures', 'Failed sign-ins before lockout', 1, 100],
  ['login_lockout_secs', 'Lockout (seconds)', 1, 86400],
  ['key_overlap_secs', 'Rotated signing key keeps verifying (seconds)', 0, 7776000],
];
const FLAGS = [
  ['allow_non_expiring_tokens', 'Allow tokens without an expiry date'],
  ['allow_query_credentials', 'Allow credentials in the query string or form body'],
  ['require_password_confirmation', 'Token changes from a login session need the password'],
  ['require_two_factor', 'Every person signs in with two-factor authentication (an authenticator app); those without it can only set it up'],
];

export async function renderPolicy(main) {
  const tenant = await api.get('/tenant');
  const editable = can('tenant.update_policy');
  const errorSlot = h('div');
  const inputs = {};
  const numberFields = NUMBERS.map(([key, label, min, max, hint]) => {
    const input = h('input', { type: 'number', name: key, min, max, step: 1, required: key !== 'max_token_lifetime_days', disabled: !editable });
    input.value = tenant.policy[key] ?? '';
    inputs[key] = input;
    return field(label, input, hint);
  });
  const flagFields = FLAGS.map(([key, label]) => {
    const c = checkbox(label, { name: key, checked: Boolean(tenant.policy[key]), disabled: !editable });
    inputs[key] = c.input;
    return c.el;
  });
  const allowlist = h('textarea', { name: 'ip_allowlist', rows: 3, spellcheck: 'false', disabled: !editable });
  allowlist.value = tenant.policy.ip_allowlist.join('\n');

  const form = h('form', { class: 'card', 'aria-label': 'Tenant policy' },
    errorSlot,
    h('div', { class: 'row' }, numberFields),
    h('div', { class: 'field' }, flagFields),
    field('IP allow-list', allowlist, 'Addresses or CIDR ranges every token must come from, one per line. Empty: anywhere.'),
    editable ? h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save policy')) : h('p', { class: 'muted' }, 'Only administrators can change the policy.'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(errorSlot, null);
    const policy = { ip_allowlist: allowlist.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean) };
    for (const [key] of NUMBERS) {
      if (inputs[key].value !== '') policy[key] = Number(inputs[key].value);
    }
    for (const [key] of FLAGS) policy[key] = inputs[key].checked;
    try {
      await busy(form, () => api.put('/tenant/policy', policy));
      toast('Policy saved.');
    } catch (err) { showError(errorSlot, err); }
  });

  fill(main, 
    ...pageHeader('Tenant policy', `Rules for every token and sign-in of ${tenant.name} (${tenant.slug}).`),
    form);
}

export async function renderSigningKeys(main) {
  const tenant = await api.get('/tenant');
  const canRotate = can('signing_keys.rotate');
  const errorSlot = h('div');
  const listSlot = h('div');
  fill(main, 
    ...pageHeader('Signing keys', 'Ed25519 keys that sign this tenant’s tokens. Rotating makes a new active key; the previous one keeps verifying for the overlap period.'),
    h('p', {}, 'Public keys are published at ', h('a', { href: tenant.jwks_path, target: '_blank', rel: 'noopener' }, h('code', {}, tenant.jwks_path)), '.'),
    h('div', { class: 'toolbar' },
      canRotate ? h('button', { type: 'button', class: 'primary', onclick: () => rotate() }, 'Rotate key') : null,
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    errorSlot, listSlot);

  async function load() {
    showError(errorSlot, null);
    try {
      const keys = await listAll('/tenant/signing-keys');
      const rows = keys.map((k) => h('tr', { 'data-kid': k.kid },
        td('Key id', h('code', {}, k.kid)),
        td('State', badge(k.state, k.state === 'active' ? 'ok' : '')),
        td('Algorithm', k.algorithm),
        td('Created', fmtDateTime(k.created_at)),
        td('Verifies until', k.retire_after ? fmtDateTime(k.retire_after) : '—'),
        td('Public key', h('code', {}, k.public_key))));
      fill(listSlot, table(['Key id', 'State', 'Algorithm', 'Created', 'Verifies until', 'Public key'], rows, { caption: 'Signing keys' }));
    } catch (err) { showError(errorSlot, err); }
  }

  async function rotate() {
    const overlap = h('input', { type: 'number', name: 'overlap_secs', min: 0, max: 7776000, step: 1, placeholder: String(tenant.policy.key_overlap_secs) });
    const key = await formDialog({
      title: 'Rotate the signing key',
      submitLabel: 'Rotate',
      build: (body) => add(body, 
        h('p', {}, 'New tokens will be signed with a new key. Tokens signed with the current key keep working while it verifies.'),
        field('Overlap (seconds)', overlap, `How long the current key keeps verifying. Empty: the policy’s ${tenant.policy.key_overlap_secs} s.`)),
      submit: () => api.post('/tenant/signing-keys/rotate', overlap.value === '' ? {} : { overlap_secs: Number(overlap.value) }),
    });
    if (key) { toast(`New active key ${key.kid}.`); await load(); }
  }

  await load();
}
