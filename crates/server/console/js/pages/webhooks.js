// Admin > Webhooks: the tenant's endpoints (signed per Standard Webhooks), a test delivery
// per endpoint, and each endpoint's delivery log (status, attempts, last response code).

import { api, listAll } from '../api.js';
import { add, badge, checkbox, confirmDialog, errorBox, field, fill, fmtDateTime, formDialog, h, pageHeader, showError, table, td, toast, uid } from '../ui.js';

export const EVENT_TYPES = [
  ['token.created', 'Token created'],
  ['token.updated', 'Token changed'],
  ['token.regenerated', 'Token regenerated or rotated'],
  ['token.deleted', 'Token deleted'],
  ['token.revoked', 'Token revoked'],
  ['token.leaked', 'Token leaked'],
  ['token.reuse_detected', 'Reuse of a replaced secret'],
  ['token.expiring', 'Token expiring soon'],
  ['token.expired', 'Token expired'],
  ['token.new_ip', 'Token used from a new address'],
  ['user.deactivated', 'User deactivated'],
];

const STATUS = { pending: ['Pending', ''], succeeded: ['Delivered', 'ok'], failed: ['Failed', 'off'] };

export async function renderWebhooks(main) {
  const errorSlot = h('div');
  const listSlot = h('div');
  const logSlot = h('div');
  let shown = null;
  fill(main,
    ...pageHeader('Webhooks', 'Sigil POSTs token and user events to these URLs, signed with each endpoint’s secret (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature). Failed deliveries are retried with backoff for more than a day.'),
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', class: 'primary', onclick: () => create() }, 'Add endpoint'),
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    errorSlot, listSlot, logSlot);

  const act = async (work) => {
    showError(errorSlot, null);
    try { await work(); } catch (err) { const box = errorBox(err); if (box) add(errorSlot, box); }
  };

  async function load() {
    showError(errorSlot, null);
    try {
      const hooks = await listAll('/webhooks');
      const rows = hooks.map((w) => h('tr', { 'data-id': w.id },
        td('URL', h('code', {}, w.url), w.description ? h('span', { class: 'sub' }, w.description) : null),
        td('Events', w.event_types.length ? w.event_types.join(', ') : 'All events'),
        td('Status', w.enabled ? badge('Enabled', 'ok') : badge('Disabled', 'off')),
        td('Created', fmtDateTime(w.created_at)),
        h('td', { class: 'row-actions' },
          h('button', { type: 'button', class: 'small', 'aria-label': `Send a test to ${w.url}`, onclick: () => sendTest(w) }, 'Send test'), ' ',
          h('button', { type: 'button', class: 'small', 'aria-label': `Deliveries to ${w.url}`, onclick: () => showLog(w) }, 'Deliveries'), ' ',
          h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${w.url}`, onclick: () => edit(w) }, 'Edit'), ' ',
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${w.url}`, onclick: () => remove(w) }, 'Delete'))));
      fill(listSlot, table(['URL', 'Events', 'Status', 'Created', h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions'))],
        rows, { caption: 'Webhook endpoints', empty: 'No webhook endpoint yet.' }));
      if (shown && !hooks.some((w) => w.id === shown.id)) { shown = null; fill(logSlot); }
    } catch (err) { showError(errorSlot, err); }
  }

  function endpointForm(body, w) {
    const url = h('input', { type: 'url', name: 'url', required: true, maxlength: 2000, placeholder: 'https://hooks.example.com/sigil' });
    url.value = w?.url || '';
    const description = h('input', { type: 'text', name: 'description', maxlength: 500 });
    description.value = w?.description || '';
    const boxes = EVENT_TYPES.map(([type, label]) => ({ type, ...checkbox(`${label} (${type})`, { name: 'event_types', value: type, checked: w?.event_types.includes(type) }) }));
    const enabled = checkbox('Enabled (events are delivered)', { name: 'enabled', checked: w ? w.enabled : true });
    const secret = h('input', { type: 'text', name: 'secret', maxlength: 200, autocomplete: 'off', spellcheck: 'false', placeholder: 'whsec_…' });
    const legendId = uid('l');
    add(body,
      field('URL', url, 'Where deliveries are POSTed. Private and loopback addresses are refused unless the operator allows them.'),
      field('Description', description),
      h('fieldset', { 'aria-labelledby': legendId }, h('legend', { id: legendId }, 'Events (none ticked: all events)'), boxes.map((b) => b.el)),
      enabled.el,
      w ? null : field('Secret (optional)', secret, 'Leave empty to have one generated. Your own: whsec_ followed by the base64 of 24 to 64 random bytes.'));
    return () => {
      const out = {
        url: url.value.trim(),
        description: description.value.trim(),
        event_types: boxes.filter((b) => b.input.checked).map((b) => b.type),
        enabled: enabled.input.checked,
      };
      if (!w && secret.value.trim()) out.secret = secret.value.trim();
      return out;
    };
  }

  const create = () => act(async () => {
    let read;
    const created = await formDialog({
      title: 'Add a webhook endpoint',
      submitLabel: 'Add endpoint',
      wide: true,
      build: (body) => { read = endpointForm(body); },
      submit: () => api.post('/webhooks', read()),
    });
    if (!created) return;
    await load();
    await showSecret(created.secret, created.webhook.url);
  });

  const edit = (w) => act(async () => {
    let read;
    const updated = await formDialog({
      title: `Edit ${w.url}`,
      wide: true,
      build: (body) => { read = endpointForm(body, w); },
      submit: () => api.patch(`/webhooks/${w.id}`, read()),
    });
    if (updated) { toast('Webhook endpoint saved.'); await load(); }
  });

  const remove = (w) => act(async () => {
    const ok = await confirmDialog({ title: `Delete ${w.url}?`, message: ['Its delivery log goes too; pending deliveries are dropped.'], confirmLabel: 'Delete endpoint', danger: true });
    if (!ok) return;
    await api.del(`/webhooks/${w.id}`);
    toast('Webhook endpoint deleted.');
    await load();
  });

  const sendTest = (w) => act(async () => {
    await api.post(`/webhooks/${w.id}/test`, {});
    toast('Test delivery queued.');
    await showLog(w);
  });

  async function showLog(w) {
    shown = w;
    const page = await api.get(`/webhooks/${w.id}/deliveries`, { limit: 50 });
    const rows = page.items.map((d) => h('tr', { 'data-id': d.id },
      td('Event', h('code', {}, d.event_type), h('span', { class: 'sub' }, d.message_id)),
      td('Status', badge(...(STATUS[d.status] || [d.status, '']))),
      td('Attempts', String(d.attempts)),
      td('Last response', d.last_response_code ? String(d.last_response_code) : (d.last_error || '—')),
      td('Next attempt', d.next_attempt_at ? fmtDateTime(d.next_attempt_at) : '—'),
      td('Created', fmtDateTime(d.created_at))));
    fill(logSlot,
      h('h2', {}, `Deliveries to ${w.url}`),
      h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: () => act(() => showLog(w)) }, 'Refresh deliveries')),
      table(['Event', 'Status', 'Attempts', 'Last response', 'Next attempt', 'Created'], rows, { caption: `Deliveries to ${w.url}`, empty: 'No delivery yet.' }),
      h('p', { class: 'muted' }, `${page.total} deliver${page.total === 1 ? 'y' : 'ies'}`));
  }

  function showSecret(secret, url) {
    return formDialog({
      title: 'Signing secret',
      submitLabel: 'Done',
      build: (body) => {
        const text = h('input', { type: 'text', readonly: true, value: secret, 'aria-label': 'Webhook secret', class: 'secret' });
        add(body,
          h('div', { class: 'warning', role: 'alert' }, h('strong', {}, 'Copy this secret now. '), 'It is not shown again.'),
          h('p', {}, 'Deliveries to ', h('code', {}, url), ' are signed with it: verify ', h('code', {}, 'webhook-signature'), ' as HMAC-SHA256 of ', h('code', {}, 'id.timestamp.body'), '.'),
          text);
      },
      submit: async () => true,
    });
  }

  await load();
}
