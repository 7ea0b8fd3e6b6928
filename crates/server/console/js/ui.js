// Small DOM helpers, messages and the dialogs shared by every page.

import { ApiError, Cancelled, api, current } from './api.js';

/** h('button', {class: 'primary', onclick}, 'Save'): builds an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children, skipping null, undefined and false. */
export function add(el, ...children) {
  append(el, children);
  return el;
}

/** Replaces the children, skipping null, undefined and false. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let ids = 0;
export const uid = (prefix = 'f') => `${prefix}-${++ids}`;

/** A labelled form field; `input` gets an id and the label points at it. */
export function field(labelText, input, hint) {
  input.id ||= uid();
  const hintEl = hint ? h('div', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: input.id }, labelText), input, hintEl);
}

export function checkbox(labelText, attrs = {}) {
  const input = h('input', { type: 'checkbox', ...attrs });
  return { input, el: h('label', { class: 'check' }, input, labelText) };
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
export const fmtDate = (iso) => (iso ? dateFmt.format(new Date(iso)) : '');
export const fmtDateTime = (iso) => (iso ? dateTimeFmt.format(new Date(iso)) : '');

/** yyyy-mm-dd for a date input, in local time. */
export function isoDay(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The end of a yyyy-mm-dd day in local time, as an RFC 3339 instant. */
export function endOfDay(day) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d, 23, 59, 59).toISOString();
}

/** An error box in plain words: the detail, then each listed problem. */
export function errorBox(err) {
  if (err instanceof Cancelled) return null;
  const message = err instanceof ApiError ? err.message : 'Something went wrong in the console. Reload the page and try again.';
  if (!(err instanceof ApiError)) console.error(err);
  const list = err instanceof ApiError && err.errors.length
    ? h('ul', {}, err.errors.map((e) => h('li', {}, e)))
    : null;
  const what = err instanceof ApiError && err.status === 0 ? 'Network problem' : 'Could not complete the request';
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, `${what}: `), message, list);
}

/** Replaces the content of `slot` with the error (or clears it with null). */
export function showError(slot, err) {
  slot.replaceChildren();
  const box = err ? errorBox(err) : null;
  if (box) slot.append(box);
}

let toastTimer;
/** A short message in the polite live region. */
export function toast(message) {
  const status = document.getElementById('status');
  clearTimeout(toastTimer);
  fill(status, h('div', {}, message));
  toastTimer = setTimeout(() => fill(status, ), 5000);
}

/** Disables a form's controls while `work` runs. */
export async function busy(form, work) {
  const controls = [...form.querySelectorAll('button, input, select, textarea')].filter((c) => !c.disabled);
  controls.forEach((c) => { c.disabled = true; });
  try { return await work(); } finally { controls.forEach((c) => { c.disabled = false; }); }
}

/** Opens a modal <dialog>; it removes itself when closed. */
export function openDialog(className, ...content) {
  const dialog = h('dialog', { class: className || '' }, ...content);
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** A modal form: `build(form, errorSlot)` fills it; `submit(form)` runs on submit; closes on success. */
export function formDialog({ title, submitLabel = 'Save', danger = false, wide = false, build, submit, extraActions = [] }) {
  return new Promise((resolve) => {
    const errorSlot = h('div');
    const titleId = uid('t');
    const cancel = h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel');
    const ok = h('button', { type: 'submit', class: danger ? 'danger primary' : 'primary' }, submitLabel);
    const form = h('form', { class: 'dialog-body', method: 'dialog', novalidate: false });
    const body = h('div');
    form.append(h('h2', { id: titleId }, title), errorSlot, body,
      h('div', { class: 'form-actions' }, ...extraActions, h('span', { class: 'spacer' }), cancel, ok));
    let result;
    const dialog = openDialog(wide ? 'wide' : '', form);
    dialog.setAttribute('aria-labelledby', titleId);
    dialog.addEventListener('close', () => resolve(result));
    build(body, errorSlot, dialog);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      showError(errorSlot, null);
      try {
        result = await busy(form, () => submit(form, dialog));
        if (result !== undefined) dialog.close();
      } catch (err) {
        if (err instanceof Cancelled) return;
        showError(errorSlot, err);
        errorSlot.scrollIntoView({ block: 'nearest' });
      }
    });
    const first = body.querySelector('input:not([type=hidden]), select, textarea');
    if (first) first.focus();
  });
}

/** Yes/no question; resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false }) {
  return formDialog({
    title,
    submitLabel: confirmLabel,
    danger,
    build: (body) => add(body, ...[].concat(message).map((m) => (m instanceof Node ? m : h('p', {}, m)))),
    submit: async () => true,
  }).then((answer) => answer === true);
}

/** Asks for the password and confirms it (POST /auth/confirm-password); rejects with Cancelled. */
export async function askPassword() {
  const input = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  // With two-factor sign-in on, a code from the app (or a recovery code) too.
  const twoFactor = Boolean(current.me?.user?.two_factor);
  const code = twoFactor
    ? h('input', { type: 'text', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, maxlength: 32, spellcheck: 'false', class: 'otp' })
    : null;
  const done = await formDialog({
    title: 'Confirm your password',
    submitLabel: 'Confirm',
    build: (body) => add(body, 
      h('p', {}, 'Changes to tokens need your password. Enter it to continue; you will not be asked again for a few minutes.'),
      field('Password', input),
      code ? field('Authentication code', code, 'The six-digit code of your authenticator app, or a recovery code.') : null,
    ),
    submit: async () => {
      const body = { password: input.value };
      if (code) {
        const value = code.value.trim();
        if (/^[0-9 ]{6,7}$/.test(value)) body.code = value.replace(/\s/g, ''); else body.recovery_code = value;
      }
      const confirmation = await api.post('/auth/confirm-password', body);
      if (current.me) current.me.confirmed_until = confirmation.confirmed_until;
      return true;
    },
  });
  if (done !== true) throw new Cancelled();
}

/** Shows a new secret once, with Copy and Download. */
export function secretDialog(minted, heading = 'Your new token') {
  return new Promise((resolve) => {
    const name = minted.token?.name || 'token';
    const secret = h('textarea', { class: 'secret', readonly: true, rows: 7, spellcheck: 'false', 'aria-label': 'Token secret' });
    secret.value = minted.secret;
    const copied = h('span', { class: 'muted', role: 'status' });
    const copy = h('button', { type: 'button', class: 'primary', onclick: async () => {
      copied.textContent = (await copyText(minted.secret, secret)) ? 'Copied to the clipboard.' : 'Copy failed: select the text and copy it by hand.';
    } }, 'Copy');
    const download = h('button', { type: 'button', onclick: () => downloadText(`${fileSafe(name)}.txt`, `${minted.secret}\n`) }, 'Download');
    const close = h('button', { type: 'button', onclick: () => dialog.close() }, 'Done');
    const titleId = uid('t');
    const dialog = openDialog('secret-dialog', h('div', { class: 'dialog-body' },
      h('h2', { id: titleId }, heading),
      h('div', { class: 'warning', role: 'alert' },
        h('strong', {}, 'Copy this token now. '),
        'It will not be shown again: Sigil keeps only a fingerprint of it. If you lose it, regenerate the token.'),
      h('p', {}, 'Token ', h('strong', {}, name), minted.token?.expires_at ? ` (expires ${fmtDate(minted.token.expires_at)})` : ''),
      secret,
      h('p', { class: 'muted' }, 'Send it as ', h('code', {}, 'Authorization: Bearer <token>'), '.'),
      h('div', { class: 'form-actions' }, copied, h('span', { class: 'spacer' }), copy, download, close),
    ));
    dialog.setAttribute('aria-labelledby', titleId);
    dialog.addEventListener('close', () => resolve());
    copy.focus();
  });
}

async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    fallbackInput.focus();
    fallbackInput.select();
    try { return document.execCommand('copy'); } catch { return false; }
  }
}

function fileSafe(name) {
  return `sigil-token-${name}`.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 80);
}

export function downloadText(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}` }, text);
}

/** A page heading that takes focus after navigation, with an optional lead paragraph. */
export function pageHeader(title, lead) {
  return [h('h1', { tabindex: '-1' }, title), lead ? h('p', { class: 'lead' }, lead) : null];
}

/** A table whose cells carry data-label for the phone layout. */
export function table(headers, rows, { caption, empty = 'Nothing here yet.' } = {}) {
  const head = h('thead', {}, h('tr', {}, headers.map((hd) => (hd instanceof Node ? hd : h('th', { scope: 'col' }, hd)))));
  const body = h('tbody');
  if (!rows.length) add(body, h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, empty)));
  for (const row of rows) add(body, row);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive' }, caption ? h('caption', { class: 'sr-only' }, caption) : null, head, body));
}

export function td(label, ...content) {
  return h('td', { 'data-label': label }, ...content);
}
