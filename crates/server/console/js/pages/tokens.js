// Token lists: "My tokens" (the signed-in user's) and, for admins and token managers,
// "API tokens" (every token of the tenant). Generate, Edit, Copy, Regenerate, Remove, Refresh.

import { api, can, current, listAll, withConfirmation } from '../api.js';
import { add, badge, confirmDialog, errorBox, field, fill, fmtDate, fmtDateTime, formDialog, h, pageHeader, secretDialog, showError, table, td, toast } from '../ui.js';
import { loadTokenFormData, tokenDialog } from './token-form.js';

const PAGE = 50;

export async function renderTokens(main, { all, prefill = null }) {
  const me = current.me;
  const state = { items: [], total: 0, offset: 0, q: '', owner: '', selected: new Set(), expanded: new Set(), last: null };
  let users = null;
  if (all && can('users.list')) {
    users = await listAll('/users').catch(() => null);
  }
  const userName = (id) => {
    if (id === me.user.id) return `${me.user.username} (you)`;
    const u = users?.find((x) => x.id === id);
    return u ? u.username : id;
  };

  const errorSlot = h('div');
  const listSlot = h('div');
  const search = h('input', { type: 'search', name: 'q', placeholder: 'Search name or description', 'aria-label': 'Search tokens' });
  let searchTimer;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = search.value.trim(); state.offset = 0; load(); }, 250);
  });
  let ownerFilter = null;
  if (all && users) {
    ownerFilter = h('select', { name: 'owner', 'aria-label': 'Filter by user' },
      h('option', { value: '' }, 'All users'),
      users.filter((u) => !u.is_system).map((u) => h('option', { value: u.id }, u.username)));
    ownerFilter.addEventListener('change', () => { state.owner = ownerFilter.value; state.offset = 0; load(); });
  }

  const btn = (label, onclick, extra = {}) => h('button', { type: 'button', onclick, ...extra }, label);
  const generateBtn = btn(all ? 'Add token' : 'Generate', () => generate(), { class: 'primary' });
  const editBtn = btn('Edit', () => edit(single()));
  const copyBtn = btn('Copy', () => copy(single()));
  const regenBtn = btn('Regenerate', () => regenerate(single()));
  const removeBtn = btn('Remove', () => remove(selectedTokens()), { class: 'danger' });
  const refreshBtn = btn('Refresh', () => load(true));
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Token actions' },
    generateBtn, editBtn, copyBtn, regenBtn, removeBtn, refreshBtn, h('span', { class: 'grow' }), ownerFilter, search);

  const origin = location.origin;
  fill(main, 
    ...pageHeader(all ? 'API tokens' : 'My tokens', all
      ? 'Every personal and application token of the tenant. Select rows with the checkboxes (Shift selects a range).'
      : 'Personal tokens let scripts call the API as you, limited to the methods you choose. Select rows with the checkboxes (Shift selects a range).'),
    h('p', { class: 'muted' }, 'Use a token as ', h('code', {}, `curl -H "Authorization: Bearer $TOKEN" ${origin}/api/v1/users/me`)),
    toolbar, errorSlot, listSlot);

  const selectedTokens = () => state.items.filter((t) => state.selected.has(t.id));
  const single = () => selectedTokens()[0];

  function syncToolbar() {
    const n = state.selected.size;
    editBtn.disabled = copyBtn.disabled = regenBtn.disabled = n !== 1;
    removeBtn.disabled = n === 0;
    removeBtn.textContent = n > 1 ? `Remove (${n})` : 'Remove';
    const canChange = can('tokens.create');
    generateBtn.disabled = !canChange;
    for (const row of listSlot.querySelectorAll('tbody tr[data-id]')) {
      const on = state.selected.has(row.dataset.id);
      row.classList.toggle('selected', on);
      const box = row.querySelector('input[type=checkbox]');
      if (box) box.checked = on;
    }
    const head = listSlot.querySelector('thead input[type=checkbox]');
    if (head) {
      head.checked = state.items.length > 0 && state.selected.size === state.items.length;
      head.indeterminate = state.selected.size > 0 && state.selected.size < state.items.length;
    }
  }

  function select(index, { range = false, toggle = false, only = false, value } = {}) {
    const id = state.items[index].id;
    if (range && state.last !== null) {
      const [a, b] = [Math.min(state.last, index), Math.max(state.last, index)];
      for (let i = a; i <= b; i += 1) state.selected.add(state.items[i].id);
    } else if (only) {
      state.selected.clear();
      state.selected.add(id);
    } else if (toggle) {
      if (value ?? !state.selected.has(id)) state.selected.add(id); else state.selected.delete(id);
    }
    state.last = index;
    syncToolbar();
  }

  function scopeCell(t) {
    return [h('span', {}, t.scope?.name || ''), t.scope?.set ? h('span', { class: 'sub' }, h('code', {}, t.scope.set)) : null];
  }

  function statusCell(t) {
    if (t.expired) return badge('Expired', 'off');
    return t.enabled ? badge('Enabled', 'ok') : badge('Disabled', 'off');
  }

  // Recent client addresses come with getToken only: loaded when details open.
  async function loadAddresses(t, slot) {
    try {
      const full = await api.get(`/tokens/${t.id}`);
      const recent = full.recent_addresses || [];
      fill(slot, recent.length
        ? h('ul', { class: 'address-list' }, recent.map((a) => h('li', {}, h('code', {}, a.ip), ` · first ${fmtDateTime(a.first_seen)}, last ${fmtDateTime(a.last_seen)}`)))
        : 'Not used yet.');
    } catch (err) { fill(slot, errorBox(err)); }
  }

  function creditsText(c) {
    if (!c) return 'Unlimited';
    const refill = c.refill
      ? ` · refills to ${c.refill.amount} ${c.refill.interval === 'daily' ? 'every day' : `on day ${c.refill.day || 1} of each month`}${c.next_refill_at ? ` (next ${fmtDateTime(c.next_refill_at)})` : ''}`
      : '';
    return `${c.remaining} left${refill}`;
  }

  function detailsRow(t, cols) {
    const methods = t.scope?.methods;
    const addresses = h('dd', { 'aria-live': 'polite' }, 'Loading…');
    loadAddresses(t, addresses);
    return h('tr', { class: 'details', 'data-details-for': t.id }, h('td', { colspan: cols },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Id'), h('dd', {}, h('code', {}, t.id)),
        h('dt', {}, 'Kind'), h('dd', {}, t.kind),
        h('dt', {}, 'User'), h('dd', {}, userName(t.owner_id)),
        h('dt', {}, 'Description'), h('dd', {}, t.description || '—'),
        h('dt', {}, 'Scope'), h('dd', {}, t.scope?.name || '', methods ? h('ul', { class: 'method-list' }, methods.map((m) => h('li', {}, h('code', {}, m)))) : null),
        h('dt', {}, 'IP filter'), h('dd', {}, t.ip_filter?.length ? t.ip_filter.join(', ') : 'Anywhere'),
        h('dt', {}, 'Credits'), h('dd', { 'data-fact': 'credits' }, creditsText(t.credits)),
        h('dt', {}, 'Rate limits'), h('dd', { 'data-fact': 'rate-limits' }, t.rate_limits?.length
          ? t.rate_limits.map((l) => `${l.name}: ${l.limit} per ${l.window_secs} s`).join(', ')
          : 'None of its own'),
        h('dt', {}, 'Created'), h('dd', {}, fmtDateTime(t.created_at), t.created_by && t.created_by !== t.owner_id ? ` by ${userName(t.created_by)}` : ''),
        h('dt', {}, 'Updated'), h('dd', {}, fmtDateTime(t.updated_at)),
        h('dt', {}, 'Recent addresses'), addresses,
        h('dt', {}, 'Secret'), h('dd', {}, `Generation ${t.generation}. The secret is never shown again after creation. `,
          h('span', { class: 'actions' },
            btn('Regenerate secret', () => regenerate(t), { class: 'small' }),
            btn('Copy token', () => copy(t), { class: 'small' }))),
      )));
  }

  function render() {
    const cols = all ? 9 : 8;
    const headBox = h('input', { type: 'checkbox', 'aria-label': 'Select all tokens on this page' });
    headBox.addEventListener('change', () => {
      if (headBox.checked) state.items.forEach((t) => state.selected.add(t.id)); else state.selected.clear();
      syncToolbar();
    });
    const headers = [h('th', { class: 'sel', scope: 'col' }, headBox), 'Name', ...(all ? ['User'] : []), 'Scope', 'Expires', 'Uses', 'Last used', 'Status', h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions'))];
    const rows = [];
    state.items.forEach((t, index) => {
      const box = h('input', { type: 'checkbox', 'aria-label': `Select token ${t.name}` });
      box.addEventListener('click', (e) => select(index, { range: e.shiftKey, toggle: !e.shiftKey, value: box.checked }));
      const expandBtn = btn('Details', () => {
        if (state.expanded.has(t.id)) state.expanded.delete(t.id); else state.expanded.add(t.id);
        render();
      }, { class: 'small', 'aria-expanded': String(state.expanded.has(t.id)), 'aria-label': `Details of ${t.name}` });
      const row = h('tr', { 'data-id': t.id },
        h('td', { class: 'sel' }, box),
        td('Name', h('strong', {}, t.name), t.description ? h('span', { class: 'sub' }, t.description) : null),
        all ? td('User', userName(t.owner_id), t.kind === 'application' ? h('span', { class: 'sub' }, 'application') : null) : null,
        td('Scope', scopeCell(t)),
        td('Expires', t.expires_at ? fmtDate(t.expires_at) : 'Never'),
        h('td', { class: 'num', 'data-label': 'Uses' }, String(t.use_count ?? 0)),
        td('Last used', t.last_used_at ? [fmtDateTime(t.last_used_at), t.last_used_ip ? h('span', { class: 'sub' }, `from ${t.last_used_ip}`) : null] : 'Never'),
        td('Status', statusCell(t)),
        h('td', { class: 'row-actions' },
          expandBtn, ' ',
          btn('Edit', () => edit(t), { class: 'small', 'aria-label': `Edit ${t.name}` }), ' ',
          btn('Delete', () => remove([t]), { class: 'small danger', 'aria-label': `Delete ${t.name}` })),
      );
      row.addEventListener('click', (e) => {
        if (e.target.closest('button, a, input, label')) return;
        select(index, e.shiftKey ? { range: true } : (e.ctrlKey || e.metaKey) ? { toggle: true } : { only: true });
      });
      rows.push(row);
      if (state.expanded.has(t.id)) rows.push(detailsRow(t, cols));
    });
    const pager = state.total > PAGE ? h('div', { class: 'pager' },
      h('span', { class: 'muted' }, `${state.offset + 1}–${state.offset + state.items.length} of ${state.total}`),
      btn('Previous', () => { state.offset = Math.max(0, state.offset - PAGE); load(); }, { disabled: state.offset === 0 }),
      btn('Next', () => { state.offset += PAGE; load(); }, { disabled: state.offset + PAGE >= state.total })) : null;
    fill(listSlot, 
      table(headers, rows, { caption: all ? 'API tokens of the tenant' : 'Your tokens', empty: state.q ? 'No token matches the search.' : 'No tokens yet. Generate one to get started.' }),
      pager,
      h('p', { class: 'muted', 'aria-live': 'polite' }, `${state.total} token${state.total === 1 ? '' : 's'}`));
    syncToolbar();
  }

  async function load(announce = false) {
    showError(errorSlot, null);
    try {
      const query = { q: state.q, offset: state.offset, limit: PAGE, owner_id: all ? state.owner : me.user.id };
      const page = await api.get('/tokens', query);
      state.items = page.items;
      state.total = page.total;
      const ids = new Set(page.items.map((t) => t.id));
      state.selected = new Set([...state.selected].filter((id) => ids.has(id)));
      state.last = null;
      render();
      if (announce) toast('Token list refreshed.');
    } catch (err) {
      showError(errorSlot, err);
    }
  }

  async function act(work) {
    showError(errorSlot, null);
    try { await work(); } catch (err) {
      const box = errorBox(err);
      if (box) add(errorSlot, box);
    }
  }

  const generate = (preset = null) => act(async () => {
    const data = await loadTokenFormData();
    const minted = await tokenDialog({ data, users: all ? users : null, prefill: preset });
    if (!minted) return;
    await load();
    await secretDialog(minted);
  });

  const edit = (t) => t && act(async () => {
    const data = await loadTokenFormData();
    const result = await tokenDialog({ token: t, data });
    if (result?.regenerate) return regenerate(t);
    if (result) { toast(`Token “${result.name}” saved.`); await load(); }
  });

  const regenerate = (t) => t && act(async () => {
    const ok = await confirmDialog({
      title: `Regenerate “${t.name}”?`,
      message: ['A new secret replaces the current one, which stops working at once. Scripts using it must be updated.'],
      confirmLabel: 'Regenerate',
    });
    if (!ok) return;
    const minted = await withConfirmation(() => api.post(`/tokens/${t.id}/regenerate`));
    await load();
    await secretDialog(minted, `New secret for “${t.name}”`);
  });

  const copy = (t) => t && act(async () => {
    const nameInput = h('input', { type: 'text', name: 'name', required: true, maxlength: 200 });
    nameInput.value = `${t.name} (copy)`;
    const minted = await formDialog({
      title: `Copy “${t.name}”`,
      submitLabel: 'Create copy',
      build: (body) => add(body, 
        h('p', {}, 'Creates a new token with the same scope, expiry, IP filter and description. It gets its own secret.'),
        field('Name of the new token', nameInput)),
      submit: () => withConfirmation(() => api.post(`/tokens/${t.id}/copy`, undefined, { name: nameInput.value.trim() })),
    });
    if (!minted) return;
    await load();
    await secretDialog(minted);
  });

  const remove = (tokens) => tokens.length && act(async () => {
    const names = tokens.map((t) => t.name);
    const ok = await confirmDialog({
      title: tokens.length === 1 ? `Remove “${names[0]}”?` : `Remove ${tokens.length} tokens?`,
      message: [
        'Removed tokens stop working at once. This cannot be undone.',
        h('ul', {}, names.map((n) => h('li', {}, n))),
      ],
      confirmLabel: tokens.length === 1 ? 'Remove token' : `Remove ${tokens.length} tokens`,
      danger: true,
    });
    if (!ok) return;
    const result = await withConfirmation(() => api.post('/tokens/bulk-delete', { ids: tokens.map((t) => t.id) }));
    tokens.forEach((t) => state.selected.delete(t.id));
    toast(`Removed ${result.count} token${result.count === 1 ? '' : 's'}.`);
    await load();
  });

  await load();
  if (prefill) {
    // A link opened the dialog; afterwards the address is the plain token list.
    history.replaceState(null, '', '#/tokens');
    await generate(prefill);
  }
}
