// A checklist of registry methods: search, "Only checked", select all per plugin, API-docs links.

import { listAll } from './api.js';
import { h, uid } from './ui.js';

let cache = null;

/** Every method of the registry visible to the caller (GET /methods), loaded once per page view. */
export async function loadMethods(refresh = false) {
  if (!cache || refresh) cache = await listAll('/methods');
  return cache;
}

/**
 * Builds the picker. `checked` holds method ids or globs; entries that are not a known
 * method id (globs such as `platform.environment.*`) are kept in a free-text "Patterns" field.
 * Returns { el, value() } where value() is the list to send as `methods`.
 */
export function methodPicker(methods, checked = [], { label = 'Methods' } = {}) {
  const known = new Set(methods.map((m) => m.id));
  const chosen = new Set(checked.filter((id) => known.has(id)));
  const patterns = h('input', { type: 'text', name: 'patterns', placeholder: 'e.g. platform.environment.*', spellcheck: 'false' });
  patterns.value = checked.filter((id) => !known.has(id)).join(', ');

  const search = h('input', { type: 'search', placeholder: 'Search methods', 'aria-label': 'Search methods', class: 'picker-search' });
  const onlyChecked = h('input', { type: 'checkbox', name: 'only_checked' });
  const count = h('span', { class: 'muted', 'aria-live': 'polite' });
  const noneMatch = h('p', { class: 'none', hidden: true }, 'No method matches the search.');

  const byPlugin = new Map();
  for (const m of methods) {
    if (!byPlugin.has(m.plugin)) byPlugin.set(m.plugin, []);
    byPlugin.get(m.plugin).push(m);
  }

  const groups = [];
  for (const [plugin, items] of byPlugin) {
    const all = h('input', { type: 'checkbox', 'data-plugin': plugin });
    const rows = items.map((m) => {
      const box = h('input', { type: 'checkbox', value: m.id, checked: chosen.has(m.id), 'data-method': m.id });
      const descId = uid('d');
      box.setAttribute('aria-describedby', descId);
      box.addEventListener('change', () => {
        if (box.checked) chosen.add(m.id); else chosen.delete(m.id);
        update();
      });
      const docs = m.docs_url
        ? h('a', { class: 'docs', href: m.docs_url, target: '_blank', rel: 'noopener' }, 'API docs', h('span', { class: 'sr-only' }, ` for ${m.id} (opens in a new tab)`))
        : h('span');
      const li = h('li', { 'data-id': m.id },
        h('label', {}, box, h('span', { class: 'm-main' },
          h('code', {}, m.id), ' ', h('span', { class: 'verb' }, m.http_method), ' ',
          h('span', { class: 'muted mono' }, m.path), ' ', h('span', { class: 'muted' }, `(${m.access})`),
          h('span', { class: 'm-desc', id: descId }, m.description))),
        docs);
      const haystack = `${m.id} ${m.plugin} ${m.http_method} ${m.path} ${m.description}`.toLowerCase();
      return { m, box, li, haystack };
    });
    all.addEventListener('change', () => {
      for (const r of rows) {
        if (r.li.hidden) continue;
        r.box.checked = all.checked;
        if (all.checked) chosen.add(r.m.id); else chosen.delete(r.m.id);
      }
      update();
    });
    const fieldset = h('fieldset', {},
      h('legend', {}, h('label', {}, all, `Select all in ${plugin}`, h('span', { class: 'muted' }, ` (${items.length})`))),
      h('ul', {}, rows.map((r) => r.li)));
    groups.push({ plugin, all, rows, fieldset });
  }

  function update() {
    const q = search.value.trim().toLowerCase();
    const terms = q ? q.split(/\s+/) : [];
    let shown = 0;
    for (const g of groups) {
      let visible = 0;
      let visibleChecked = 0;
      for (const r of g.rows) {
        const show = terms.every((t) => r.haystack.includes(t)) && (!onlyChecked.checked || r.box.checked);
        r.li.hidden = !show;
        if (show) { visible += 1; if (r.box.checked) visibleChecked += 1; }
      }
      g.fieldset.hidden = visible === 0;
      g.all.checked = visible > 0 && visibleChecked === visible;
      g.all.indeterminate = visibleChecked > 0 && visibleChecked < visible;
      shown += visible;
    }
    noneMatch.hidden = shown > 0;
    count.textContent = `${chosen.size} of ${methods.length} checked`;
  }
  search.addEventListener('input', update);
  onlyChecked.addEventListener('change', update);

  const titleId = uid('p');
  const el = h('div', { class: 'picker', role: 'group', 'aria-labelledby': titleId },
    h('div', { class: 'picker-bar' },
      h('strong', { id: titleId }, label),
      search,
      h('label', { class: 'check' }, onlyChecked, 'Only checked'),
      count),
    h('div', { class: 'picker-groups' }, groups.map((g) => g.fieldset), noneMatch),
    h('div', { class: 'field picker-patterns' },
      h('label', { for: patterns.id = uid() }, 'Patterns'),
      patterns,
      h('div', { class: 'hint' }, 'Optional globs, comma-separated: every method whose id matches is included.')));
  update();

  return {
    el,
    value() {
      const extra = patterns.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
      return [...methods.filter((m) => chosen.has(m.id)).map((m) => m.id), ...extra];
    },
    focus() { search.focus(); },
  };
}
