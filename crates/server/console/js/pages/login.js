// Sign in: tenant, username, password → POST /auth/login; the session token lives in sessionStorage.

import { ApiError, api, current, session } from '../api.js';
import { busy, field, fill, h, pageHeader, showError } from '../ui.js';
import { go, loadMe, signOut, takeNotice, takeReturn } from '../app.js';
import { codeInput } from './two-factor.js';

const TENANT_KEY = 'sigil.tenant';

export function renderLogin(main) {
  const params = new URLSearchParams(location.search);
  const tenant = h('input', { type: 'text', name: 'tenant', autocomplete: 'organization', required: true, autocapitalize: 'none', spellcheck: 'false' });
  tenant.value = params.get('tenant') || localStorage.getItem(TENANT_KEY) || '';
  const username = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const errorSlot = h('div');
  const notice = takeNotice();
  const form = h('form', { class: 'card login', 'aria-label': 'Sign in' },
    notice ? h('div', { class: 'notice', role: 'status' }, notice) : null,
    errorSlot,
    field('Tenant', tenant, 'Your organisation’s short name, e.g. acme.'),
    field('Username', username),
    field('Password', password),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(errorSlot, null);
    try {
      const result = await busy(form, () => api.post('/auth/login', {
        tenant: tenant.value.trim(),
        username: username.value.trim(),
        password: password.value,
      }));
      if (result.challenge) {
        secondStep(main, result);
        return;
      }
      await signedIn(result);
    } catch (err) {
      session.clear();
      current.me = null;
      password.value = '';
      showError(errorSlot, err);
      (err instanceof ApiError && err.status === 401 ? password : tenant).focus();
    }
  });
  session.clear();
  current.me = null;
  fill(main, h('div', { class: 'narrow' }, ...pageHeader('Sign in to Sigil', 'Manage your API tokens and your account.'), form));
  (tenant.value ? username : tenant).focus();
}

/** Stores the session and goes on; a session that may only enrol goes to the profile. */
async function signedIn(result) {
  session.set({ token: result.token, expires_at: result.expires_at, tenant: result.tenant });
  localStorage.setItem(TENANT_KEY, result.tenant);
  await loadMe();
  go(result.two_factor_enrolment_required ? '/profile' : (takeReturn() || '/tokens'));
}

/** The second step of a sign-in with two-factor: a code from the app, or a recovery code. */
function secondStep(main, challenge) {
  const code = codeInput();
  const recovery = h('input', { type: 'text', name: 'recovery_code', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none', maxlength: 32 });
  const errorSlot = h('div');
  let useRecovery = false;
  const codeField = field('Authentication code', code, 'The six-digit code your authenticator app shows.');
  const recoveryField = field('Recovery code', recovery, 'One of the codes you saved when you set up two-factor sign-in. Each works once.');
  recoveryField.hidden = true;
  const toggle = h('button', { type: 'button', class: 'link', onclick: () => {
    useRecovery = !useRecovery;
    codeField.hidden = useRecovery;
    recoveryField.hidden = !useRecovery;
    code.required = !useRecovery;
    recovery.required = useRecovery;
    toggle.textContent = useRecovery ? 'Use the authenticator app instead' : 'Use a recovery code instead';
    (useRecovery ? recovery : code).focus();
  } }, 'Use a recovery code instead');
  const form = h('form', { class: 'card login', 'aria-label': 'Two-factor sign-in' },
    errorSlot, codeField, recoveryField,
    h('div', { class: 'form-actions' }, toggle, h('span', { class: 'spacer' }),
      h('button', { type: 'button', onclick: () => renderLogin(main) }, 'Back'),
      h('button', { type: 'submit', class: 'primary' }, 'Verify')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(errorSlot, null);
    const body = { challenge: challenge.challenge };
    if (useRecovery) body.recovery_code = recovery.value.trim();
    else body.code = code.value.replace(/\s/g, '');
    try {
      const result = await busy(form, () => api.post('/auth/login/complete', body));
      await signedIn(result);
    } catch (err) {
      session.clear();
      current.me = null;
      showError(errorSlot, err);
      if (err instanceof ApiError && ['challenge_expired', 'challenge_invalid'].includes(err.code)) {
        signOut(err.message);
        return;
      }
      code.value = '';
      recovery.value = '';
      (useRecovery ? recovery : code).focus();
    }
  });
  fill(main, h('div', { class: 'narrow' }, ...pageHeader('Two-factor sign-in', 'Enter the code from your authenticator app.'), form));
  code.focus();
}
