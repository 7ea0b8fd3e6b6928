// Token hygiene: tokens expiring soon, tokens unused for long, and tokens never used.

import { api } from '../api.js';
import { field, fill, fmtDate, fmtDateTime, h, pageHeader, showError, table, td } from '../ui.js';

export async function renderHygiene(main) {
  const errorSlot = h('div');
  const slot = h('div');
  const expiringDays = h('input', { type: 'number', name: 'expiring_within_days', min: 1, max: 365, value: 7 });
  const unusedDays = h('input', { type: 'number', name: 'unused_for_days', min: 1, max: 3650, value: 90 });
  const form = h('form', { class: 'filters', 'aria-label': 'Hygiene settings' },
    h('div', { class: 'row' }, field('Expiring within (days)', expiringDays), field('Unused for (days)', unusedDays)),
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', class: 'primary' }, 'Show')));
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  fill(main, ...pageHeader('Token hygiene', 'Tokens that need attention: about to expire, unused for long, or never used at all.'), form, errorSlot, slot);

  const section = (title, tokens, empty) => [
    h('h2', {}, `${title} (${tokens.length})`),
    table(['Name', 'Expires', 'Last used', 'Created'], tokens.map((t) => h('tr', { 'data-id': t.id },
      td('Name', h('strong', {}, t.name), h('span', { class: 'sub' }, t.kind)),
      td('Expires', t.expires_at ? fmtDate(t.expires_at) : 'Never'),
      td('Last used', t.last_used_at ? fmtDateTime(t.last_used_at) : 'Never'),
      td('Created', fmtDate(t.created_at)))), { caption: title, empty }),
  ];

  async function load() {
    showError(errorSlot, null);
    try {
      const report = await api.get('/tokens/hygiene', { expiring_within_days: expiringDays.value, unused_for_days: unusedDays.value });
      const never = report.unused.filter((t) => !t.last_used_at);
      const unused = report.unused.filter((t) => t.last_used_at);
      fill(slot,
        section('Expiring soon', report.expiring, 'No token expires in that time.'),
        section('Unused', unused, 'Every token was used recently.'),
        section('Never used', never, 'No old token is unused.'));
    } catch (err) { showError(errorSlot, err); }
  }

  await load();
}
