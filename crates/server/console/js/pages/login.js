// Sign in: tenant, username, password → POST /auth/login; the session token lives in sessionStorage.

import { ApiError, api, current, session } from '../api.js';
import { busy, field, fill, h, pageHeader, showError } from '../ui.js';
import { go, loadMe, takeNotice } from '../app.js';

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
      await busy(form, async () => {
        const result = await api.post('/auth/login', {
          tenant: tenant.value.trim(),
          username: username.value.trim(),
          password: password.value,
        });
        session.set({ token: result.token, expires_at: result.expires_at, tenant: result.tenant });
        localStorage.setItem(TENANT_KEY, result.tenant);
        await loadMe();
      });
      go('/tokens');
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
