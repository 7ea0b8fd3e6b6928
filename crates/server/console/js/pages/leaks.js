// Report leaked tokens: a secret pasted somewhere by mistake is revoked at once if it is a
// live Sigil secret. The answer is the same whatever the secrets were.

import { api } from '../api.js';
import { field, fill, h, pageHeader, showError } from '../ui.js';

export async function renderLeaks(main) {
  const errorSlot = h('div');
  const result = h('div', { 'aria-live': 'polite' });
  const secrets = h('textarea', { name: 'secrets', rows: 5, required: true, spellcheck: 'false', placeholder: 'eyJ0eXAiOiJzaWdpbCtqd3Qi…' });
  const url = h('input', { type: 'url', name: 'url', maxlength: 2000, placeholder: 'https://github.com/org/repo/commit/…' });
  const source = h('input', { type: 'text', name: 'source', maxlength: 200, placeholder: 'commit, chat, paste, log…' });
  const form = h('form', { 'aria-label': 'Leak report' },
    field('Leaked secrets', secrets, 'One per line, at most 100. Each live one is revoked at once: make a new token afterwards (Copy keeps the settings).'),
    h('div', { class: 'row' }, field('Where it was found (URL)', url), field('Source', source)),
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', class: 'danger primary' }, 'Report and revoke')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(errorSlot, null);
    fill(result);
    try {
      const list = secrets.value.split(/\s+/).map((s) => s.trim()).filter(Boolean);
      const body = { secrets: list };
      if (url.value.trim()) body.url = url.value.trim();
      if (source.value.trim()) body.source = source.value.trim();
      const answer = await api.post('/leaks', body);
      form.reset();
      fill(result, h('p', { class: 'notice', role: 'status' },
        `Report received (${answer.received} secret${answer.received === 1 ? '' : 's'}). Every one that was a live Sigil secret is now revoked.`));
    } catch (err) { showError(errorSlot, err); }
  });
  fill(main, ...pageHeader('Report a leaked token', 'Found a Sigil token in a repository, a chat or a log? Report it here: it stops working at once and the tenant is told.'), errorSlot, form, result);
}
