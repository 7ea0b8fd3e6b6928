// Audit log: who did what, filtered by actor, target, action and time; older pages by cursor.

import { api, can, listAll } from '../api.js';
import { field, fill, fmtDateTime, h, pageHeader, showError, table, td } from '../ui.js';

export async function renderAudit(main) {
  const errorSlot = h('div');
  const listSlot = h('div');
  const users = can('users.list') ? await listAll('/users').catch(() => []) : [];
  const actor = h('select', { name: 'actor_id' }, h('option', { value: '' }, 'Anyone'),
    users.filter((u) => !u.is_system).map((u) => h('option', { value: u.id }, u.username)));
  const target = h('input', { type: 'text', name: 'target_id', placeholder: 'Token, user or webhook id', spellcheck: 'false' });
  const action = h('input', { type: 'text', name: 'action', placeholder: 'token.create', list: 'audit-actions', spellcheck: 'false' });
  const actions = h('datalist', { id: 'audit-actions' },
    ['token.create', 'token.update', 'token.regenerate', 'token.rotate', 'token.delete', 'token.leaked', 'token.reuse_detected',
      'user.create', 'user.update', 'user.deactivate', 'webhook.create', 'webhook.update', 'webhook.delete', 'webhook.test',
      'verification.refused'].map((a) => h('option', { value: a })));
  const since = h('input', { type: 'date', name: 'since' });
  const until = h('input', { type: 'date', name: 'until' });
  const form = h('form', { class: 'filters', 'aria-label': 'Audit filters' },
    h('div', { class: 'row' }, field('Actor', actor), field('Target id', target), field('Action', action), actions),
    h('div', { class: 'row' }, field('From (day)', since), field('Until (day, included)', until)),
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
      h('button', { type: 'button', onclick: () => { form.reset(); load(); } }, 'Clear')));
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  fill(main, ...pageHeader('Audit log', 'Every change made through the API, and refused uses of tokens, newest first.'), form, errorSlot, listSlot);

  const day = (value, add = 0) => {
    if (!value) return undefined;
    const [y, m, d] = value.split('-').map(Number);
    return new Date(y, m - 1, d + add).toISOString();
  };

  async function load(cursor, shownBefore = []) {
    showError(errorSlot, null);
    try {
      const page = await api.get('/audit-events', {
        actor_id: actor.value, target_id: target.value.trim(), action: action.value.trim(),
        since: day(since.value), until: day(until.value, 1), cursor, limit: 50,
      });
      const items = [...shownBefore, ...page.items];
      const rows = items.map((e) => h('tr', { 'data-id': e.id },
        td('Time', fmtDateTime(e.created_at)),
        td('Actor', e.actor || '—'),
        td('Action', h('code', {}, e.action), e.occurrences > 1 ? h('span', { class: 'sub' }, `${e.occurrences} times`) : null),
        td('Target', e.target_type, e.target_id ? h('span', { class: 'sub' }, h('code', {}, e.target_id)) : null),
        td('Address', e.client_ip || '—')));
      fill(listSlot,
        table(['Time', 'Actor', 'Action', 'Target', 'Address'], rows, { caption: 'Audit events', empty: 'No event matches the filters.' }),
        h('p', { class: 'muted', 'aria-live': 'polite' }, `${items.length} of ${page.total} event${page.total === 1 ? '' : 's'}`),
        page.next_cursor ? h('button', { type: 'button', onclick: () => load(page.next_cursor, items) }, 'Older events') : null);
    } catch (err) { showError(errorSlot, err); }
  }

  await load();
}
