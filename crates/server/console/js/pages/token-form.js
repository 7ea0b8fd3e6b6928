// The Generate / Edit token dialog: name, description, expiry, IP filter, enabled, usage
// limits (credits with refill, rate limits), and the API access: a predefined or custom
// scope set, or a custom pick of methods.

import { api, current, listAll, withConfirmation } from '../api.js';
import { loadMethods, methodPicker } from '../method-picker.js';
import { add, checkbox, endOfDay, field, formDialog, h, isoDay } from '../ui.js';

const CUSTOM = 'custom';

/** What the form needs from the server: sets, methods and (when readable) the tenant policy. */
export async function loadTokenFormData() {
  const [sets, methods, tenant] = await Promise.all([
    listAll('/scope-sets'),
    loadMethods(),
    api.get('/tenant').catch(() => null),
  ]);
  return { sets, methods, policy: tenant?.policy || null };
}

/**
 * Opens the dialog. Without `token` it generates (POST /tokens) and resolves with the minted
 * token; with `token` it edits (PATCH) and resolves with the updated token, or with
 * { regenerate: true } when the person chose "Regenerate secret".
 */
/** Rate limits as lines of `name count/seconds` (`burst 100/60`). */
export function formatRateLimits(limits) {
  return (limits || []).map((l) => `${l.name} ${l.limit}/${l.window_secs}`).join('\n');
}

/** Parses the rate-limit lines; a line that does not parse is sent as is for the server to name. */
export function parseRateLimits(text) {
  return text.split('\n').map((line) => line.trim()).filter(Boolean).map((line) => {
    const m = /^(\S+)\s+(\d+)\s*\/\s*(\d+)\s*s?$/.exec(line);
    return m ? { name: m[1], limit: Number(m[2]), window_secs: Number(m[3]) } : { name: line, limit: 0, window_secs: 0 };
  });
}

/** The credits fields of the form, and the value they describe (null: unlimited). */
function creditFields(credits) {
  const remaining = h('input', { type: 'number', name: 'credits_remaining', min: 0, step: 1, placeholder: 'Unlimited' });
  const interval = h('select', { name: 'refill_interval' },
    h('option', { value: '' }, 'Never'), h('option', { value: 'daily' }, 'Daily'), h('option', { value: 'monthly' }, 'Monthly'));
  const amount = h('input', { type: 'number', name: 'refill_amount', min: 1, step: 1 });
  const day = h('input', { type: 'number', name: 'refill_day', min: 1, max: 28, step: 1, placeholder: '1' });
  if (credits) {
    remaining.value = String(credits.remaining);
    interval.value = credits.refill?.interval || '';
    amount.value = credits.refill ? String(credits.refill.amount) : '';
    day.value = credits.refill?.day ? String(credits.refill.day) : '';
  }
  const sync = () => {
    amount.disabled = !interval.value; amount.required = Boolean(interval.value);
    day.disabled = interval.value !== 'monthly';
  };
  interval.addEventListener('change', sync);
  sync();
  const value = () => {
    if (remaining.value === '') return null;
    const out = { remaining: Number(remaining.value) };
    if (interval.value) {
      out.refill = { interval: interval.value, amount: Number(amount.value) };
      if (interval.value === 'monthly' && day.value) out.refill.day = Number(day.value);
    }
    return out;
  };
  const el = h('div', { class: 'row' },
    field('Credits', remaining, 'Uses left; each call spends one (or the method\'s cost). Empty: unlimited.'),
    field('Refill', interval), field('Refill amount', amount), field('Day of month', day));
  return { el, value };
}

/** Days in a pre-filled `expires_in` (`30d`, `12w`, `6m`, `1y`, or a plain number of days). */
function prefillDays(text) {
  const m = /^(\d{1,4})([dwmy]?)$/.exec(String(text || '').trim());
  if (!m) return null;
  return Number(m[1]) * ({ '': 1, d: 1, w: 7, m: 30, y: 365 }[m[2]]);
}

export async function tokenDialog({ token = null, users = null, data, prefill = null }) {
  const { sets, methods, policy } = data;
  const editing = Boolean(token);

  let owner = null;
  if (!editing && users) {
    owner = h('select', { name: 'owner' },
      users.filter((u) => u.active && !u.is_system).map((u) => h('option', { value: u.id, selected: u.id === current.me?.user.id },
        `${u.display_name || u.username} (${u.username}${u.kind === 'api' ? ', service account' : ''})`)));
  }

  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 200, autocomplete: 'off' });
  name.value = token?.name || prefill?.name || '';
  const description = h('textarea', { name: 'description', maxlength: 2000, rows: 2 });
  description.value = token?.description || prefill?.description || '';

  const today = new Date();
  const expires = h('input', { type: 'date', name: 'expires', min: isoDay(today) });
  const maxDays = policy?.max_token_lifetime_days;
  if (maxDays) expires.max = isoDay(new Date(today.getTime() + maxDays * 86400000));
  const noExpiry = checkbox('Never expires', { name: 'no_expiry' });
  const allowNever = policy ? policy.allow_non_expiring_tokens : true;
  if (token) {
    if (token.expires_at) expires.value = isoDay(new Date(token.expires_at));
    else noExpiry.input.checked = true;
  } else {
    const wanted = prefillDays(prefill?.expires_in) || 30;
    expires.value = isoDay(new Date(today.getTime() + Math.min(wanted, maxDays || wanted) * 86400000));
  }
  const syncExpiry = () => { expires.disabled = noExpiry.input.checked; expires.required = !noExpiry.input.checked; };
  noExpiry.input.addEventListener('change', syncExpiry);
  syncExpiry();

  const ipFilter = h('textarea', { name: 'ip_filter', rows: 2, spellcheck: 'false', placeholder: '203.0.113.7\n10.0.0.0/8' });
  ipFilter.value = (token?.ip_filter || []).join('\n');
  const credits = creditFields(token?.credits || null);
  const rateLimits = h('textarea', { name: 'rate_limits', rows: 2, spellcheck: 'false', placeholder: 'burst 100/60' });
  rateLimits.value = formatRateLimits(token?.rate_limits);
  const enabled = checkbox('Enabled (the token can be used)', { name: 'enabled', checked: token ? token.enabled : true });

  const scope = h('select', { name: 'scope' });
  const predefined = sets.filter((s) => s.kind === 'predefined');
  const custom = sets.filter((s) => s.kind !== 'predefined');
  const option = (s) => h('option', { value: `set:${s.id}` }, `${s.name} (${s.method_count} methods)`);
  if (predefined.length) scope.append(h('optgroup', { label: 'Predefined sets' }, predefined.map(option)));
  if (custom.length) scope.append(h('optgroup', { label: 'Custom sets of this tenant' }, custom.map(option)));
  scope.append(h('option', { value: CUSTOM }, 'Custom: choose methods'));
  const initialSet = token ? token.scope?.set : (prefill?.scope_set || predefined[0]?.id || null);
  scope.value = initialSet && sets.some((s) => s.id === initialSet) ? `set:${initialSet}` : CUSTOM;
  const setInfo = h('div', { class: 'hint', 'aria-live': 'polite' });
  const picker = methodPicker(methods, token?.scope?.methods || []);
  const syncScope = () => {
    const isCustom = scope.value === CUSTOM;
    picker.el.hidden = !isCustom;
    const set = sets.find((s) => `set:${s.id}` === scope.value);
    setInfo.textContent = set
      ? `${set.description || set.name}${set.access === 'read' ? ' (read only)' : ''}${set.plugin ? ` · from ${set.plugin}` : ''}`
      : 'Tick the methods this token may call. You never get more than your own role allows.';
  };
  scope.addEventListener('change', syncScope);
  syncScope();

  const extraActions = [];
  let regenerate = false;
  if (editing) {
    extraActions.push(h('button', { type: 'button', class: 'link', onclick: (e) => {
      regenerate = true;
      e.target.closest('dialog').close();
    } }, 'Lost the secret? Regenerate it'));
  }

  const result = await formDialog({
    title: editing ? `Edit token “${token.name}”` : 'Generate a token',
    submitLabel: editing ? 'Save' : 'Generate',
    wide: true,
    extraActions,
    build: (body) => add(body, 
      owner ? field('User', owner, 'The token acts as this user; a service account gets an application token.') : null,
      h('div', { class: 'row' }, field('Name', name), field('Expires on', expires, maxDays ? `At most ${maxDays} days ahead.` : 'The token stops working after this day.')),
      allowNever ? noExpiry.el : null,
      field('Description', description),
      field('IP filter', ipFilter, 'Addresses or CIDR ranges the token may be used from, one per line. Empty: anywhere.'),
      credits.el,
      field('Rate limits', rateLimits, 'One per line: a name, then calls per window in seconds (burst 100/60). The owner\'s and the tenant\'s limits apply too.'),
      enabled.el,
      h('div', { class: 'gap' }),
      field('API access', scope),
      setInfo,
      picker.el,
    ),
    submit: async () => {
      const body = {};
      const ips = ipFilter.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
      const expiresAt = noExpiry.input.checked || !expires.value ? null : endOfDay(expires.value);
      const isCustom = scope.value === CUSTOM;
      if (!editing) {
        body.name = name.value.trim();
        if (description.value.trim()) body.description = description.value.trim();
        if (expiresAt) body.expires_at = expiresAt;
        if (ips.length) body.ip_filter = ips;
        body.enabled = enabled.input.checked;
        const wantedCredits = credits.value();
        if (wantedCredits) body.credits = wantedCredits;
        const limits = parseRateLimits(rateLimits.value);
        if (limits.length) body.rate_limits = limits;
        if (isCustom) body.methods = picker.value(); else body.scope_set = scope.value.slice(4);
        if (owner) {
          body.owner_id = owner.value;
          const chosen = users.find((u) => u.id === owner.value);
          if (chosen?.kind === 'api') body.kind = 'application';
        }
        return withConfirmation(() => api.post('/tokens', body));
      }
      if (name.value.trim() !== token.name) body.name = name.value.trim();
      if (description.value.trim() !== (token.description || '')) body.description = description.value.trim();
      if (enabled.input.checked !== token.enabled) body.enabled = enabled.input.checked;
      if (ips.join(',') !== (token.ip_filter || []).join(',')) body.ip_filter = ips;
      const wantedCredits = credits.value();
      const had = token.credits ? { remaining: token.credits.remaining, ...(token.credits.refill ? { refill: token.credits.refill } : {}) } : null;
      if (JSON.stringify(wantedCredits) !== JSON.stringify(had)) body.credits = wantedCredits;
      if (rateLimits.value.trim() !== formatRateLimits(token.rate_limits)) body.rate_limits = parseRateLimits(rateLimits.value);
      const oldDay = token.expires_at ? isoDay(new Date(token.expires_at)) : null;
      const newDay = expiresAt ? expires.value : null;
      if (oldDay !== newDay) body.expires_at = expiresAt;
      if (isCustom) {
        const picked = picker.value();
        if (token.scope?.set || picked.join(',') !== (token.scope?.methods || []).join(',')) body.methods = picked;
      } else if (scope.value.slice(4) !== token.scope?.set) {
        body.scope_set = scope.value.slice(4);
      }
      if (!Object.keys(body).length) return token;
      return withConfirmation(() => api.patch(`/tokens/${token.id}`, body));
    },
  });
  if (regenerate) return { regenerate: true };
  return result;
}
