// Admin > Plugins: the plugins the tenant sees (global ones and its own), registering a
// tenant plugin from a manifest or an OpenAPI document, and what a registration widened.

import { ApiError, api, can, listAll } from '../api.js';
import { add, badge, confirmDialog, field, fill, formDialog, h, openDialog, pageHeader, showError, table, td, toast, uid } from '../ui.js';

export async function renderPlugins(main) {
  const errorSlot = h('div');
  const listSlot = h('div');
  const canRegister = can('plugins.register');
  const canDelete = can('plugins.delete');
  fill(main,
    ...pageHeader('Plugins', 'APIs whose methods tokens can be scoped to. Each plugin owns the method ids that start with its id; the built-in plugin "sigil" is Sigil\'s own API.'),
    h('div', { class: 'toolbar' },
      canRegister ? h('button', { type: 'button', class: 'primary', onclick: () => register() }, 'Register plugin') : null,
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    errorSlot, listSlot);

  async function load() {
    showError(errorSlot, null);
    try {
      const plugins = await listAll('/plugins');
      const rows = plugins.map((p) => h('tr', { 'data-id': p.id },
        td('Name', h('strong', {}, p.name), p.description ? h('span', { class: 'sub' }, p.description) : null),
        td('Id', h('code', {}, p.id)),
        td('Visibility', p.built_in ? badge('Built-in') : p.visibility === 'tenant' ? badge('This tenant') : badge('Global')),
        td('Version', p.version),
        h('td', { class: 'num', 'data-label': 'Methods' }, String(p.methods.length)),
        td('Scope sets', p.scope_sets.length ? h('code', {}, p.scope_sets.join(', ')) : '—'),
        h('td', { class: 'row-actions' }, canDelete && p.visibility === 'tenant'
          ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${p.name}`, onclick: () => remove(p) }, 'Delete')
          : null)));
      fill(listSlot, table(
        ['Name', 'Id', 'Visibility', 'Version', 'Methods', 'Scope sets', h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions'))],
        rows, { caption: 'Plugins' }));
    } catch (err) { showError(errorSlot, err); }
  }

  async function register() {
    const doc = h('textarea', { name: 'document', rows: 14, required: true, spellcheck: 'false', class: 'code' });
    const id = h('input', { type: 'text', name: 'id', maxlength: 64, pattern: '[a-z0-9][a-z0-9_\\-]*', spellcheck: 'false', autocapitalize: 'none' });
    const answer = await formDialog({
      title: 'Register a plugin',
      submitLabel: 'Register',
      wide: true,
      build: (body) => add(body,
        h('p', {}, 'The plugin is private to this tenant. Its method ids must start with its id and a dot (plugin ',
          h('code', {}, 'crm'), ': ', h('code', {}, 'crm.contacts.list'), '). Registering a newer version replaces the old one.'),
        field('Manifest or OpenAPI 3 document (JSON)', doc),
        field('Plugin id', id, 'Only for an OpenAPI document: its operations become methods named after this id.')),
      submit: () => {
        let parsed;
        try { parsed = JSON.parse(doc.value); } catch (e) {
          throw new ApiError({ code: 'invalid_json', detail: `The document is not valid JSON: ${e.message}` }, 400);
        }
        const body = parsed && typeof parsed === 'object' && 'openapi' in parsed
          ? { openapi: parsed, id: id.value.trim() || undefined }
          : { manifest: parsed };
        return api.post('/plugins', body);
      },
    });
    if (!answer) return;
    await registered(answer);
    await load();
  }

  async function remove(p) {
    const ok = await confirmDialog({ title: `Delete ${p.name}?`, message: 'Its methods disappear; tokens and scope sets that named them no longer grant them.', confirmLabel: 'Delete', danger: true });
    if (!ok) return;
    try { await api.del(`/plugins/${encodeURIComponent(p.id)}`); } catch (err) { showError(errorSlot, err); return; }
    toast(`Plugin ${p.name} deleted.`);
    await load();
  }

  await load();
}

/** The answer of a registration: the plugin, removed methods, and what it widened. */
export function registered(answer) {
  return new Promise((resolve) => {
    const p = answer.plugin;
    const titleId = uid('t');
    const widened = answer.widened || [];
    const total = answer.widened_total || 0;
    const parts = [h('p', {}, `${p.name} ${p.version} is registered with ${p.methods.length} methods.`)];
    if (answer.removed_methods?.length) {
      parts.push(h('p', {}, 'Methods this version no longer has (tokens lose them): ',
        h('code', {}, answer.removed_methods.join(', '))));
    }
    if (total === 0) {
      parts.push(h('p', { class: 'notice', 'data-widened': '0' }, 'No existing token or scope set gained methods.'));
    } else {
      parts.push(h('div', { class: 'warning', role: 'alert', 'data-widened': String(total) },
        h('strong', {}, `${total} existing ${total === 1 ? 'token or scope set grants' : 'tokens and scope sets grant'} more now. `),
        'Their scopes match methods of this registration. Review them and narrow any that should not have these methods.'));
      const rows = widened.map((w) => h('tr', { 'data-id': w.id },
        td('Kind', w.kind === 'token' ? 'Token' : 'Scope set'),
        td('Name', h('strong', {}, w.name), h('span', { class: 'sub' }, h('code', {}, w.id))),
        td('Gained', h('code', {}, w.added_methods.join(', '))),
        h('td', { class: 'num', 'data-label': 'Tokens using it' }, w.tokens_using === null || w.tokens_using === undefined ? '—' : String(w.tokens_using))));
      parts.push(table(['Kind', 'Name', 'Gained', 'Tokens using it'], rows, { caption: 'Widened tokens and scope sets' }));
      if (widened.length < total) parts.push(h('p', { class: 'muted' }, `The first ${widened.length} of ${total} are listed; the audit log has the registration.`));
    }
    const close = h('button', { type: 'button', class: 'primary', onclick: () => dialog.close() }, 'Done');
    const dialog = openDialog('wide', h('div', { class: 'dialog-body' },
      h('h2', { id: titleId }, `Plugin ${p.id} registered`),
      ...parts,
      h('div', { class: 'form-actions' }, h('span', { class: 'spacer' }), close)));
    dialog.setAttribute('aria-labelledby', titleId);
    dialog.addEventListener('close', () => resolve());
    close.focus();
  });
}
