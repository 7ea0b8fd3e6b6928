// Admin > Scope sets: predefined sets (from plugins) and the tenant's custom sets.

import { ApiError, api, can, listAll } from '../api.js';
import { loadMethods, methodPicker } from '../method-picker.js';
import { add, checkbox, confirmDialog, field, fill, formDialog, h, pageHeader, showError, table, td, toast } from '../ui.js';

export async function renderScopeSets(main) {
  const errorSlot = h('div');
  const listSlot = h('div');
  const canCreate = can('scope_sets.create');
  const canDelete = can('scope_sets.delete');
  fill(main, 
    ...pageHeader('Scope sets', 'Named sets of methods that tokens can be given. Predefined sets come with plugins; administrators add custom ones.'),
    h('div', { class: 'toolbar' },
      canCreate ? h('button', { type: 'button', class: 'primary', onclick: () => create() }, 'Create scope set') : null,
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    errorSlot, listSlot);

  async function load() {
    showError(errorSlot, null);
    try {
      const sets = await listAll('/scope-sets');
      const rows = sets.map((s) => h('tr', { 'data-id': s.id },
        td('Name', h('strong', {}, s.name), s.description ? h('span', { class: 'sub' }, s.description) : null),
        td('Id', h('code', {}, s.id)),
        td('Kind', s.kind === 'predefined' ? `Predefined${s.plugin ? ` (${s.plugin})` : ''}` : 'Custom'),
        td('Access', s.access === 'read' ? 'Read only' : 'Read & change'),
        h('td', { class: 'num', 'data-label': 'Methods' }, String(s.method_count)),
        td('Entries', h('code', {}, s.entries.join(', '))),
        h('td', { class: 'row-actions' }, canDelete && s.kind === 'custom'
          ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${s.name}`, onclick: () => remove(s) }, 'Delete')
          : null)));
      fill(listSlot, table(
        ['Name', 'Id', 'Kind', 'Access', 'Methods', 'Entries', h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions'))],
        rows, { caption: 'Scope sets' }));
    } catch (err) { showError(errorSlot, err); }
  }

  async function create() {
    let methods;
    try { methods = await loadMethods(); } catch (err) { showError(errorSlot, err); return; }
    const id = h('input', { type: 'text', name: 'id', required: true, minlength: 2, maxlength: 63, pattern: '[a-z0-9_\\-]{2,63}', spellcheck: 'false', autocapitalize: 'none' });
    const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 200 });
    const description = h('textarea', { name: 'description', maxlength: 2000, rows: 2 });
    const readOnly = checkbox('Read only (only the read methods of the entries)', { name: 'read_only' });
    const picker = methodPicker(methods, []);
    const set = await formDialog({
      title: 'Create a scope set',
      submitLabel: 'Create',
      wide: true,
      build: (body) => add(body, 
        h('div', { class: 'row' }, field('Id', id, '2-63 of a-z, 0-9, - and _; tokens refer to the set by it.'), field('Name', name)),
        field('Description', description),
        readOnly.el,
        h('div', { class: 'gap' }),
        picker.el),
      submit: () => {
        const body = { id: id.value.trim(), name: name.value.trim(), methods: picker.value() };
        if (description.value.trim()) body.description = description.value.trim();
        if (readOnly.input.checked) body.access = 'read';
        return api.post('/scope-sets', body);
      },
    });
    if (set) { toast(`Scope set ${set.name} created.`); await load(); }
  }

  async function remove(s) {
    const ok = await confirmDialog({ title: `Delete ${s.name}?`, message: 'Tokens can no longer be given this set.', confirmLabel: 'Delete', danger: true });
    if (!ok) return;
    try {
      await api.del(`/scope-sets/${encodeURIComponent(s.id)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'scope_set_in_use')) { showError(errorSlot, err); return; }
      const force = await confirmDialog({
        title: `${s.name} is in use`,
        message: [err.message, 'Delete it anyway? Those tokens lose the rights they had from it.'],
        confirmLabel: 'Delete anyway', danger: true,
      });
      if (!force) return;
      try { await api.del(`/scope-sets/${encodeURIComponent(s.id)}`, { force: true }); } catch (e) { showError(errorSlot, e); return; }
    }
    toast(`Scope set ${s.name} deleted.`);
    await load();
  }

  await load();
}
