// Two-factor sign-in (TOTP) in the profile: enrol with a QR code, show the recovery codes
// once (Copy, Download), turn it off. Also the code step of sign-in.

import { api, current } from '../api.js';
import { add, badge, busy, downloadText, field, fill, fmtDateTime, h, openDialog, showError, toast } from '../ui.js';

/** An input for a six-digit code from the authenticator app. */
export function codeInput(name = 'code') {
  return h('input', {
    type: 'text', name, inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9 ]{6,7}',
    maxlength: 7, required: true, spellcheck: 'false', class: 'otp',
  });
}

/** The recovery codes, once: Copy and Download. */
export function recoveryCodesDialog(codes) {
  return new Promise((resolve) => {
    const text = `Sigil recovery codes for ${current.me?.user?.username || 'your account'} (${current.me?.tenant || ''})\nEach code signs you in once without the authenticator app.\n\n${codes.join('\n')}\n`;
    const list = h('ol', { class: 'recovery-codes', 'aria-label': 'Recovery codes' }, codes.map((c) => h('li', {}, h('code', {}, c))));
    const status = h('span', { class: 'muted', role: 'status' });
    const copy = h('button', { type: 'button', class: 'primary', onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        status.textContent = 'Copied to the clipboard.';
      } catch {
        status.textContent = 'Copy failed: select the codes and copy them by hand.';
      }
    } }, 'Copy');
    const download = h('button', { type: 'button', onclick: () => downloadText('sigil-recovery-codes.txt', text) }, 'Download');
    const close = h('button', { type: 'button', onclick: () => dialog.close() }, 'Done');
    const dialog = openDialog('secret-dialog', h('div', { class: 'dialog-body' },
      h('h2', { id: 'recovery-h' }, 'Your recovery codes'),
      h('div', { class: 'warning', role: 'alert' },
        h('strong', {}, 'Save these codes now. '),
        'Each one signs you in once if your authenticator app is gone. They will not be shown again.'),
      list,
      h('div', { class: 'form-actions' }, status, h('span', { class: 'spacer' }), copy, download, close)));
    dialog.setAttribute('aria-labelledby', 'recovery-h');
    dialog.addEventListener('close', () => resolve());
    copy.focus();
  });
}

/** The profile's two-factor card; `refresh` re-renders the page after a change. */
export function twoFactorCard(me, refresh) {
  const user = me.user;
  const card = h('section', { class: 'card', 'aria-labelledby': 'tf-h', id: 'two-factor' });
  const errorSlot = h('div');
  if (user.kind !== 'person') {
    return add(card, h('h2', { id: 'tf-h' }, 'Two-factor sign-in'),
      h('p', { class: 'muted' }, 'Service accounts sign in with application tokens and have no second factor.'));
  }
  if (me.token_kind !== 'session') {
    return add(card, h('h2', { id: 'tf-h' }, 'Two-factor sign-in'),
      h('p', {}, user.two_factor ? badge('On', 'ok') : badge('Off', 'off')),
      h('p', { class: 'muted' }, 'Manage it from a login session.'));
  }

  if (user.two_factor) {
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
    const code = codeInput();
    const off = h('form', { 'aria-label': 'Turn off two-factor sign-in' },
      errorSlot,
      h('div', { class: 'row' }, field('Password', password), field('Code from the app, or a recovery code', code)),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'danger' }, 'Turn off')));
    code.removeAttribute('pattern');
    code.removeAttribute('maxlength');
    off.addEventListener('submit', async (event) => {
      event.preventDefault();
      showError(errorSlot, null);
      const value = code.value.trim();
      const body = { password: password.value };
      if (/^[0-9 ]{6,7}$/.test(value)) body.code = value; else body.recovery_code = value;
      try {
        await busy(off, () => api.post('/users/me/two-factor/totp/disable', body));
        toast('Two-factor sign-in is off.');
        await refresh();
      } catch (err) { showError(errorSlot, err); }
    });
    return add(card, h('h2', { id: 'tf-h' }, 'Two-factor sign-in'),
      h('p', {}, badge('On', 'ok'), ` since ${fmtDateTime(user.two_factor_enabled_at)}. `,
        `${me.recovery_codes_left ?? 0} recovery codes left.`),
      h('p', { class: 'muted' }, 'Sign-in asks for a code from your authenticator app after the password, and so does password confirmation. Personal tokens need no code.'),
      off);
  }

  const start = h('button', { type: 'button', class: 'primary', onclick: () => begin() }, 'Set up an authenticator app');
  const slot = h('div', {}, start);
  add(card, h('h2', { id: 'tf-h' }, 'Two-factor sign-in'),
    me.two_factor_enrolment_required
      ? h('div', { class: 'notice', role: 'status' }, 'Your tenant requires two-factor sign-in. Set it up to continue.')
      : h('p', {}, badge('Off', 'off'), ' Protect your sign-in with a code from an authenticator app.'),
    errorSlot, slot);

  async function begin() {
    showError(errorSlot, null);
    let enrolment;
    try {
      enrolment = await api.post('/users/me/two-factor/totp');
    } catch (err) { showError(errorSlot, err); return; }
    const qr = h('img', {
      class: 'qr', width: 200, height: 200, alt: 'QR code for the authenticator app',
      src: `data:image/svg+xml;base64,${btoa(enrolment.qr_code_svg)}`,
    });
    const secret = h('code', { class: 'totp-secret', 'data-secret': enrolment.secret }, enrolment.secret.replace(/(.{4})/g, '$1 ').trim());
    const code = codeInput();
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
    const form = h('form', { 'aria-label': 'Confirm the authenticator app' },
      h('ol', {},
        h('li', {}, 'Scan the QR code with an authenticator app (or type the key in).'),
        h('li', {}, 'Enter the six-digit code it shows, and your password.')),
      h('div', { class: 'grid-2' },
        h('div', {}, qr, h('p', { class: 'muted' }, 'Key: ', secret)),
        h('div', {}, field('Code from the app', code), field('Password', password),
          h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Turn on')))));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      showError(errorSlot, null);
      try {
        const done = await busy(form, () => api.post('/users/me/two-factor/totp/confirm', { code: code.value.replace(/\s/g, ''), password: password.value }));
        await recoveryCodesDialog(done.recovery_codes);
        toast('Two-factor sign-in is on.');
        await refresh();
      } catch (err) {
        showError(errorSlot, err);
        code.value = '';
        code.focus();
      }
    });
    fill(slot, form);
    code.focus();
  }

  return card;
}

