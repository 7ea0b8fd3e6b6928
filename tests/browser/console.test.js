// Browser tests of the Sigil web console. Run by .ci/e2e/browser.sh, which starts the
// server and passes SIGIL_URL, SIGIL_TENANT, SIGIL_ADMIN_PASSWORD and ARTIFACTS.
// The tests share one browser page and run in order.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = required('SIGIL_URL');
const TENANT = process.env.SIGIL_TENANT || 'acme';
const ADMIN_PASSWORD = required('SIGIL_ADMIN_PASSWORD');
const ARTIFACTS = process.env.ARTIFACTS || path.resolve('../artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const BOB_PASSWORD = 'Quiet-Harbour-Lantern-47';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through .ci/e2e/browser.sh`);
  return value;
}

/** A call to the REST API as a script would make it. */
async function call(method, apiPath, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const resp = await fetch(`${BASE}/api/v1${apiPath}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

async function login(username, password) {
  const r = await call('POST', '/auth/login', { body: { tenant: TENANT, username, password } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token;
}

let browser;
let context;
let page;
let adminSession;
let bob;
let shot = 0;

async function screenshot(name, options = {}) {
  shot += 1;
  await page.screenshot({ path: path.join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true, ...options });
}

const dialog = (name) => page.getByRole('dialog', { name });
const row = (name) => page.locator('tbody tr[data-id]').filter({ has: page.getByText(name, { exact: true }) });

async function signIn(username, password) {
  await page.goto(`${BASE}/console/#/login`);
  await page.getByLabel('Tenant', { exact: true }).fill(TENANT);
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'My tokens' }).waitFor();
}

async function readSecret(title = 'Your new token') {
  const d = dialog(title);
  await d.waitFor();
  const secret = await d.getByLabel('Token secret', { exact: true }).inputValue();
  assert.match(secret, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the secret is a JWT');
  return secret;
}

async function closeSecret(title = 'Your new token') {
  await dialog(title).getByRole('button', { name: 'Done' }).click();
  await dialog(title).waitFor({ state: 'detached' });
}

/** Generates a token through the Generate dialog with a predefined set; returns its secret. */
async function generateWithSet(name, setId) {
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const d = dialog('Generate a token');
  await d.getByLabel('Name', { exact: true }).fill(name);
  await d.getByLabel('API access', { exact: true }).selectOption(`set:${setId}`);
  await d.getByRole('button', { name: 'Generate', exact: true }).click();
  const secret = await readSecret();
  await closeSecret();
  await row(name).waitFor();
  return secret;
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // Another user with a token of their own, made through the API as a script would.
  adminSession = await login('admin', ADMIN_PASSWORD);
  const created = await call('POST', '/users', {
    token: adminSession,
    body: { username: 'bob', display_name: 'Bob Builder', email: 'bob@example.com', password: BOB_PASSWORD, role: 'member' },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const bobSession = await login('bob', BOB_PASSWORD);
  const refused = await call('POST', '/tokens', { token: bobSession, body: { name: 'bob-ci', scope_set: 'read-only', expires_at: new Date(Date.now() + 7 * 86400000).toISOString() } });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, 'password_confirmation_required');
  const confirmed = await call('POST', '/auth/confirm-password', { token: bobSession, body: { password: BOB_PASSWORD } });
  assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
  const minted = await call('POST', '/tokens', { token: bobSession, body: { name: 'bob-ci', scope_set: 'read-only', expires_at: new Date(Date.now() + 7 * 86400000).toISOString() } });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  bob = { id: created.body.id, session: bobSession, token: minted.body.token };

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (err) => console.error('page error:', err.message));
});

after(async () => {
  await browser?.close();
});

test('the console is served at /console/ with its files and a strict CSP', async () => {
  const index = await fetch(`${BASE}/console/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /text\/html/);
  assert.match(index.headers.get('content-security-policy'), /default-src 'self'/);
  assert.match(await index.text(), /js\/app\.js/);
  const script = await fetch(`${BASE}/console/js/app.js`);
  assert.equal(script.status, 200);
  assert.match(script.headers.get('content-type'), /javascript/);
});

test('/ redirects to the console', async () => {
  const resp = await fetch(`${BASE}/`, { redirect: 'manual' });
  assert.ok([301, 302, 303, 307, 308].includes(resp.status), `status ${resp.status}`);
  assert.equal(new URL(resp.headers.get('location'), BASE).pathname, '/console/');
});

test('sign-in shows the problem in plain words, then signs in', async () => {
  await page.goto(`${BASE}/console/`);
  await page.getByRole('heading', { name: 'Sign in to Sigil' }).waitFor();
  await page.getByLabel('Tenant', { exact: true }).fill(TENANT);
  await page.getByLabel('Username', { exact: true }).fill('admin');
  await page.getByLabel('Password', { exact: true }).fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'password is wrong' }).waitFor();
  await screenshot('sign-in-error');
  await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'My tokens' }).waitFor();
  const stored = await page.evaluate(() => JSON.parse(sessionStorage.getItem('sigil.session')));
  assert.ok(stored.token, 'the session token is kept in sessionStorage');
  await screenshot('my-tokens-empty');
});

let secret;

test('generate a custom-scoped token: password confirmation, secret shown once, Copy and Download', async () => {
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const d = dialog('Generate a token');
  await d.getByLabel('Name', { exact: true }).fill('ci-deploy');
  await d.getByLabel('Description', { exact: true }).fill('Deploys from CI');
  await d.getByLabel('API access', { exact: true }).selectOption({ label: 'Custom: choose methods' });
  const search = d.getByRole('searchbox', { name: 'Search methods' });
  await search.fill('users/me');
  await d.getByRole('checkbox', { name: /^me\.get\b/ }).check();
  await search.fill('list tokens');
  const listTokens = d.getByRole('checkbox', { name: /^tokens\.list\b/ });
  await listTokens.check();
  await search.fill('');
  await d.getByRole('checkbox', { name: 'Only checked' }).check();
  const visible = d.locator('.picker li:not([hidden])');
  assert.deepEqual(await visible.evaluateAll((items) => items.map((li) => li.dataset.id).sort()), ['me.get', 'tokens.list']);
  const docs = d.getByRole('link', { name: /API docs for me\.get/ });
  assert.match(await docs.getAttribute('href'), /\/docs#/);
  await screenshot('generate-custom');
  await d.getByRole('button', { name: 'Generate', exact: true }).click();

  const confirm = dialog('Confirm your password');
  await confirm.waitFor();
  await confirm.getByLabel('Password', { exact: true }).fill('wrong-password');
  await confirm.getByRole('button', { name: 'Confirm' }).click();
  await confirm.getByRole('alert').filter({ hasText: 'password is wrong' }).waitFor();
  await confirm.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
  await confirm.getByRole('button', { name: 'Confirm' }).click();

  secret = await readSecret();
  const shown = dialog('Your new token');
  await shown.getByText('It will not be shown again').waitFor();
  await shown.getByRole('button', { name: 'Copy' }).click();
  await shown.getByText('Copied to the clipboard.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  const [download] = await Promise.all([page.waitForEvent('download'), shown.getByRole('button', { name: 'Download' }).click()]);
  assert.match(download.suggestedFilename(), /^sigil-token-ci-deploy\.txt$/);
  assert.equal(fs.readFileSync(await download.path(), 'utf8').trim(), secret);
  await screenshot('secret-once');
  await closeSecret();

  const r = row('ci-deploy');
  await r.waitFor();
  await r.getByText('Custom (2 methods)').waitFor();
  assert.ok(!(await page.content()).includes(secret), 'the secret is gone from the page once the dialog is closed');
});

test('the secret works from a script, within its scope', async () => {
  const me = await call('GET', '/users/me', { token: secret });
  assert.equal(me.status, 200, JSON.stringify(me.body));
  assert.equal(me.body.user.username, 'admin');
  assert.equal(me.body.token_kind, 'personal');
  const users = await call('GET', '/users', { token: secret });
  assert.equal(users.status, 403);
  assert.equal(users.body.code, 'method_not_in_scope');
});

test('regenerate: the old secret gets 401, the new one works', async () => {
  await page.getByRole('checkbox', { name: 'Select token ci-deploy' }).check();
  await page.getByRole('toolbar').getByRole('button', { name: 'Regenerate' }).click();
  await dialog('Regenerate “ci-deploy”?').getByRole('button', { name: 'Regenerate' }).click();
  const fresh = await readSecret('New secret for “ci-deploy”');
  assert.notEqual(fresh, secret);
  await closeSecret('New secret for “ci-deploy”');
  const old = await call('GET', '/users/me', { token: secret });
  assert.equal(old.status, 401);
  assert.equal(old.body.code, 'token_replaced');
  const now = await call('GET', '/users/me', { token: fresh });
  assert.equal(now.status, 200);
  secret = fresh;
});

test('two more tokens, removed together with multi-select', async () => {
  await generateWithSet('tmp-one', 'read-only');
  await generateWithSet('tmp-two', 'platform.marketplace');
  await row('tmp-two').getByText('Marketplace', { exact: true }).waitFor();
  // A plain click on a row selects only that row; Ctrl+click adds another (seed 004).
  await row('tmp-one').getByText('tmp-one', { exact: true }).click();
  await row('tmp-two').getByText('tmp-two', { exact: true }).click({ modifiers: ['Control'] });
  assert.equal(await page.getByRole('checkbox', { name: 'Select token tmp-one' }).isChecked(), true);
  assert.equal(await page.getByRole('checkbox', { name: 'Select token tmp-two' }).isChecked(), true);
  assert.equal(await page.getByRole('checkbox', { name: 'Select token ci-deploy' }).isChecked(), false);
  await screenshot('multi-select');
  await page.getByRole('button', { name: 'Remove (2)' }).click();
  const d = dialog('Remove 2 tokens?');
  await d.getByText('tmp-one').waitFor();
  await d.getByText('tmp-two').waitFor();
  await d.getByRole('button', { name: 'Remove 2 tokens' }).click();
  await page.getByText('Removed 2 tokens.').waitFor();
  await row('tmp-one').waitFor({ state: 'detached' });
  await row('tmp-two').waitFor({ state: 'detached' });
  const list = await call('GET', '/tokens', { token: adminSession, body: undefined });
  const mine = list.body.items.filter((t) => t.owner_id !== bob.id).map((t) => t.name);
  assert.deepEqual(mine, ['ci-deploy']);
});

test('edit a token and copy it into a new one', async () => {
  await row('ci-deploy').getByRole('button', { name: 'Edit ci-deploy' }).click();
  const d = dialog('Edit token “ci-deploy”');
  await d.getByLabel('Description', { exact: true }).fill('Deploys from the CI runner');
  await d.getByLabel('IP filter', { exact: true }).fill('127.0.0.1\n10.0.0.0/8');
  await d.getByRole('button', { name: 'Save' }).click();
  await row('ci-deploy').getByText('Deploys from the CI runner').waitFor();
  const token = (await call('GET', '/tokens', { token: adminSession })).body.items.find((t) => t.name === 'ci-deploy');
  assert.deepEqual(token.ip_filter, ['127.0.0.1/32', '10.0.0.0/8']);

  await row('ci-deploy').getByRole('button', { name: 'Details of ci-deploy' }).click();
  await page.getByRole('button', { name: 'Copy token' }).click();
  const copy = dialog('Copy “ci-deploy”');
  await copy.getByLabel('Name of the new token', { exact: true }).fill('ci-deploy-2');
  await copy.getByRole('button', { name: 'Create copy' }).click();
  const copied = await readSecret();
  await closeSecret();
  assert.equal((await call('GET', '/users/me', { token: copied })).status, 200);
  await row('ci-deploy-2').getByRole('button', { name: 'Delete ci-deploy-2' }).click();
  await dialog('Remove “ci-deploy-2”?').getByRole('button', { name: 'Remove token' }).click();
  await row('ci-deploy-2').waitFor({ state: 'detached' });
  assert.equal((await call('GET', '/users/me', { token: copied })).status, 401);
});

test('usage limits: credits with a monthly refill and a rate limit, shown in the details and enforced', async () => {
  await row('ci-deploy').getByRole('button', { name: 'Edit ci-deploy' }).click();
  const d = dialog('Edit token “ci-deploy”');
  await d.getByLabel('Credits', { exact: true }).fill('2');
  await d.getByLabel('Refill', { exact: true }).selectOption('monthly');
  await d.getByLabel('Refill amount', { exact: true }).fill('500');
  await d.getByLabel('Day of month', { exact: true }).fill('15');
  await d.getByLabel('Rate limits', { exact: true }).fill('burst 100/60');
  await d.getByRole('button', { name: 'Save' }).click();
  await d.waitFor({ state: 'detached' });
  const token = (await call('GET', '/tokens', { token: adminSession })).body.items.find((t) => t.name === 'ci-deploy');
  assert.equal(token.credits.remaining, 2);
  assert.deepEqual(token.credits.refill, { interval: 'monthly', amount: 500, day: 15 });
  assert.equal(new Date(token.credits.next_refill_at).getUTCDate(), 15);
  assert.deepEqual(token.rate_limits, [{ name: 'burst', window_secs: 60, limit: 100 }]);

  // The details may still be open from an earlier step: open them only when closed.
  const details = page.locator('tr.details[data-details-for="' + token.id + '"]');
  if (!(await details.count())) await row('ci-deploy').getByRole('button', { name: 'Details of ci-deploy' }).click();
  await details.locator('[data-fact="credits"]').getByText(/^2 left · refills to 500 on day 15 of each month/).waitFor();
  await details.locator('[data-fact="rate-limits"]').getByText('burst: 100 per 60 s').waitFor();

  // A limit the server refuses is named in the dialog, field by field.
  await row('ci-deploy').getByRole('button', { name: 'Edit ci-deploy' }).click();
  const bad = dialog('Edit token “ci-deploy”');
  await bad.getByLabel('Rate limits', { exact: true }).fill('burst 0/60');
  await bad.getByRole('button', { name: 'Save' }).click();
  await bad.getByText(/rate_limits\[0\]\.limit/).waitFor();
  await bad.getByLabel('Rate limits', { exact: true }).fill('');
  await bad.getByLabel('Credits', { exact: true }).fill('');
  await bad.getByRole('button', { name: 'Save' }).click();
  await bad.waitFor({ state: 'detached' });
  const after = (await call('GET', '/tokens', { token: adminSession })).body.items.find((t) => t.name === 'ci-deploy');
  assert.equal(after.credits ?? null, null);
  assert.deepEqual(after.rate_limits, []);
});

test('the admin sees every API token of the tenant, another user’s included', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'API tokens' }).click();
  await page.getByRole('heading', { name: 'API tokens' }).waitFor();
  const bobRow = row('bob-ci');
  await bobRow.waitFor();
  await bobRow.getByText('bob', { exact: true }).waitFor();
  await row('ci-deploy').waitFor();

  // Management > API tokens > Add: a token for another user (seed 001).
  await page.getByRole('button', { name: 'Add token' }).click();
  const d = dialog('Generate a token');
  await d.getByLabel('User', { exact: true }).selectOption(bob.id);
  await d.getByLabel('Name', { exact: true }).fill('bob-by-admin');
  await d.getByLabel('API access', { exact: true }).selectOption('set:read-only');
  await d.getByRole('button', { name: 'Generate', exact: true }).click();
  const minted = await readSecret();
  await closeSecret();
  await row('bob-by-admin').getByText('bob', { exact: true }).waitFor();
  const who = await call('GET', '/users/me', { token: minted });
  assert.equal(who.status, 200);
  assert.equal(who.body.user.username, 'bob');
  await screenshot('admin-api-tokens');
});

test('admin pages: users, scope sets, policy, signing keys', async () => {
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('button', { name: 'Add user' }).click();
  const add = dialog('Add a user');
  await add.getByLabel('Username', { exact: true }).fill('dave');
  await add.getByLabel('Display name', { exact: true }).fill('Dave Ops');
  await add.getByLabel('Role', { exact: true }).selectOption('token_manager');
  await add.getByRole('button', { name: 'Add user' }).click();
  const dave = page.locator('tbody tr').filter({ hasText: 'Dave Ops' });
  await dave.getByText('Token manager').waitFor();
  await page.getByRole('button', { name: 'Deactivate dave' }).click();
  await dialog('Deactivate dave?').getByRole('button', { name: 'Deactivate' }).click();
  await dave.getByText('Deactivated').waitFor();
  await screenshot('admin-users');

  await nav.getByRole('link', { name: 'Scope sets' }).click();
  await page.getByRole('button', { name: 'Create scope set' }).click();
  const create = dialog('Create a scope set');
  await create.getByLabel('Id', { exact: true }).fill('ops-read');
  await create.getByLabel('Name', { exact: true }).fill('Ops read');
  await create.getByRole('searchbox', { name: 'Search methods' }).fill('getenvs');
  await create.getByRole('checkbox', { name: /^platform\.environment\.control\.getenvs\b/ }).check();
  await create.getByRole('button', { name: 'Create' }).click();
  const set = page.locator('tbody tr[data-id="ops-read"]');
  await set.getByText('Ops read').waitFor();
  await set.getByRole('button', { name: 'Delete Ops read' }).click();
  await dialog('Delete Ops read?').getByRole('button', { name: 'Delete' }).click();
  await set.waitFor({ state: 'detached' });

  await nav.getByRole('link', { name: 'Policy' }).click();
  const lifetime = page.getByLabel('Longest token lifetime (days)', { exact: true });
  await lifetime.fill('200');
  await page.getByRole('button', { name: 'Save policy' }).click();
  await page.getByText('Policy saved.').waitFor();
  const tenant = await call('GET', '/tenant', { token: adminSession });
  assert.equal(tenant.body.policy.max_token_lifetime_days, 200);

  await nav.getByRole('link', { name: 'Signing keys' }).click();
  await page.locator('tbody tr[data-kid]').first().waitFor();
  assert.equal(await page.locator('tbody tr[data-kid]').count(), 1);
  await page.getByRole('button', { name: 'Rotate key' }).click();
  await dialog('Rotate the signing key').getByRole('button', { name: 'Rotate' }).click();
  await page.locator('tbody tr[data-kid]').nth(1).waitFor();
  await page.getByText('retiring').waitFor();
  await screenshot('admin-signing-keys');
  assert.equal((await call('GET', '/users/me', { token: secret })).status, 200, 'tokens signed with the previous key still verify');
});

test('plugins: register a tenant plugin and see which scopes it widened', async () => {
  const crm = (version, extra = []) => ({
    id: 'crm', name: 'CRM', version,
    methods: [
      { id: 'crm.contacts.list', http: { method: 'GET', path: '/crm/contacts' }, access: 'read' },
      ...extra,
    ],
  });
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Plugins' }).click();
  await page.locator('tbody tr[data-id="platform"]').waitFor();

  const registerThroughConsole = async (manifest) => {
    await page.getByRole('button', { name: 'Register plugin' }).click();
    const d = dialog('Register a plugin');
    await d.getByLabel('Manifest or OpenAPI 3 document (JSON)', { exact: true }).fill(JSON.stringify(manifest));
    await d.getByRole('button', { name: 'Register' }).click();
    const done = dialog('Plugin crm registered');
    await done.waitFor();
    return done;
  };
  // Ids outside the plugin's namespace are refused with the reason.
  await page.getByRole('button', { name: 'Register plugin' }).click();
  const bad = dialog('Register a plugin');
  await bad.getByLabel('Manifest or OpenAPI 3 document (JSON)', { exact: true })
    .fill(JSON.stringify({ ...crm('0.1.0'), methods: [{ id: 'contacts.list', http: { method: 'GET', path: '/crm/contacts' }, access: 'read' }] }));
  await bad.getByRole('button', { name: 'Register' }).click();
  await bad.getByText("id must start with 'crm.'", { exact: false }).waitFor();
  await bad.getByRole('button', { name: 'Cancel' }).click();

  let done = await registerThroughConsole(crm('1.0.0'));
  await done.locator('tbody tr[data-id="read-only"]').waitFor();
  await done.getByRole('button', { name: 'Done' }).click();
  await page.locator('tbody tr[data-id="crm"]').waitFor();

  // A custom set with a glob over the plugin gains the next version's new method.
  const set = await call('POST', '/scope-sets', { token: adminSession, body: { id: 'crm-all', name: 'All of CRM', methods: ['crm.*'] } });
  assert.equal(set.status, 201, JSON.stringify(set.body));
  done = await registerThroughConsole(crm('1.1.0', [{ id: 'crm.contacts.delete', http: { method: 'DELETE', path: '/crm/contacts/{id}' }, access: 'change' }]));
  const widened = done.locator('tbody tr[data-id="crm-all"]');
  await widened.getByText('crm.contacts.delete').waitFor();
  await done.getByRole('alert').waitFor();
  await screenshot('admin-plugin-widened');
  await done.getByRole('button', { name: 'Done' }).click();
  const events = await call('GET', '/audit-events?action=plugin.update&target_id=crm', { token: adminSession });
  assert.equal(events.status, 200, JSON.stringify(events.body));
  assert.ok(events.body.items[0].after.widened.some((w) => w.id === 'crm-all'), JSON.stringify(events.body.items[0]));
});

/** Fills the password dialog if the console asks for it before a token change. */
async function confirmIfAsked(password) {
  const confirm = dialog('Confirm your password');
  await Promise.race([confirm.waitFor(), dialog('Your new token').waitFor()]);
  if (await confirm.isVisible()) {
    await confirm.getByLabel('Password', { exact: true }).fill(password);
    await confirm.getByRole('button', { name: 'Confirm' }).click();
    await confirm.waitFor({ state: 'detached' });
  }
}

/** A local webhook receiver: records each request, answers 200. */
async function startReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/hook`, received, close: () => server.close() };
}

/** Standard Webhooks: v1,base64(HMAC-SHA256(secret bytes, "id.timestamp.body")). */
function signatureOk(secret, r) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signed = `${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.${r.body}`;
  const expected = `v1,${crypto.createHmac('sha256', key).update(signed).digest('base64')}`;
  return r.headers['webhook-signature'].split(' ').includes(expected);
}

async function until(what, check) {
  for (let i = 0; i < 150; i += 1) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`waited for ${what}`);
}

test('webhooks: add an endpoint, see its secret once, send a test, read the delivery log', async () => {
  const receiver = await startReceiver();
  try {
    // Starts from a clean page whatever an earlier test left open.
    await page.goto(`${BASE}/console/#/admin/webhooks`);
    await page.reload();
    await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const d = dialog('Add a webhook endpoint');
    await d.getByLabel('URL', { exact: true }).fill(receiver.url);
    await d.getByLabel('Description', { exact: true }).fill('console test');
    await d.getByRole('checkbox', { name: /\(token\.created\)/ }).check();
    await d.getByRole('button', { name: 'Add endpoint' }).click();
    const shown = dialog('Signing secret');
    await shown.waitFor();
    const secret = await shown.getByLabel('Webhook secret', { exact: true }).inputValue();
    assert.match(secret, /^whsec_[A-Za-z0-9+/=]+$/);
    await screenshot('webhook-secret');
    await shown.getByRole('button', { name: 'Done' }).click();
    const endpoint = page.locator('tbody tr[data-id]').filter({ hasText: receiver.url });
    await endpoint.getByText('token.created').waitFor();

    await page.getByRole('button', { name: `Send a test to ${receiver.url}` }).click();
    await page.getByRole('heading', { name: `Deliveries to ${receiver.url}` }).waitFor();
    await until('the test delivery', () => receiver.received.length >= 1);
    const test = receiver.received[0];
    assert.ok(signatureOk(secret, test), 'the delivery verifies with the secret shown once');
    assert.equal(JSON.parse(test.body).type, 'webhook.test');
    await until('the delivery log to say delivered', async () => {
      await page.getByRole('button', { name: 'Refresh deliveries' }).click();
      return page.locator('tbody tr[data-id]').filter({ hasText: 'webhook.test' }).filter({ hasText: 'Delivered' }).count();
    });
    const logged = page.locator('tbody tr[data-id]').filter({ hasText: 'webhook.test' });
    await logged.getByText('200').waitFor();
    await screenshot('webhook-deliveries');

    // Only subscribed events are sent: a new token is, a deactivation is not.
    const confirmed = await call('POST', '/auth/confirm-password', { token: adminSession, body: { password: ADMIN_PASSWORD } });
    assert.equal(confirmed.status, 200);
    const minted = await call('POST', '/tokens', { token: adminSession, body: { name: 'hooked', scope_set: 'read-only', expires_at: new Date(Date.now() + 7 * 86400000).toISOString() } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    await until('token.created', () => receiver.received.some((r) => JSON.parse(r.body).type === 'token.created'));
    const created = receiver.received.find((r) => JSON.parse(r.body).type === 'token.created');
    assert.ok(signatureOk(secret, created));
    assert.equal(JSON.parse(created.body).data.token_id, minted.body.token.id);
  } finally {
    receiver.close();
  }
});

test('audit log filters, hygiene report, recent addresses on token details', async () => {
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  await page.getByLabel('Action', { exact: true }).fill('webhook.create');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.locator('tbody tr[data-id]').filter({ hasText: 'webhook.create' }).first().waitFor();
  assert.equal(await page.locator('tbody tr[data-id]').filter({ hasText: 'token.create' }).count(), 0);
  await page.getByLabel('Actor', { exact: true }).selectOption({ label: 'bob' });
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.getByText('No event matches the filters.').waitFor();
  await screenshot('audit-filtered');

  const confirmed = await call('POST', '/auth/confirm-password', { token: adminSession, body: { password: ADMIN_PASSWORD } });
  assert.equal(confirmed.status, 200);
  const soon = await call('POST', '/tokens', { token: adminSession, body: { name: 'soon-expiring', scope_set: 'read-only', expires_at: new Date(Date.now() + 3 * 86400000).toISOString() } });
  assert.equal(soon.status, 201, JSON.stringify(soon.body));
  await nav.getByRole('link', { name: 'Hygiene' }).click();
  await page.getByRole('heading', { name: /^Expiring soon/ }).waitFor();
  await page.locator('tbody tr[data-id]').filter({ hasText: 'soon-expiring' }).first().waitFor();
  await page.getByRole('heading', { name: /^Never used/ }).waitFor();
  await screenshot('hygiene');

  // A use of the token is folded into its recent addresses at the next usage flush.
  assert.equal((await call('GET', '/users/me', { token: soon.body.secret })).status, 200);
  await until('the recent address', async () => {
    const t = await call('GET', `/tokens/${soon.body.token.id}`, { token: adminSession });
    return (t.body.recent_addresses || []).length > 0;
  });
  await nav.getByRole('link', { name: 'My tokens' }).click();
  await row('soon-expiring').waitFor();
  await page.getByRole('button', { name: 'Details of soon-expiring' }).click();
  const details = page.locator(`tr[data-details-for="${soon.body.token.id}"]`);
  await details.getByText('127.0.0.1').waitFor();
  await screenshot('token-recent-addresses');
});

test('a leaked token reported through the form is revoked', async () => {
  const confirmed = await call('POST', '/auth/confirm-password', { token: adminSession, body: { password: ADMIN_PASSWORD } });
  assert.equal(confirmed.status, 200);
  const minted = await call('POST', '/tokens', { token: adminSession, body: { name: 'pasted', scope_set: 'read-only', expires_at: new Date(Date.now() + 7 * 86400000).toISOString() } });
  assert.equal(minted.status, 201);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Report a leak' }).click();
  await page.getByLabel('Leaked secrets', { exact: true }).fill(minted.body.secret);
  await page.getByLabel('Where it was found (URL)', { exact: true }).fill('https://chat.example.com/msg/1');
  await page.getByLabel('Source', { exact: true }).fill('chat');
  await page.getByRole('button', { name: 'Report and revoke' }).click();
  await page.getByText('Report received (1 secret)').waitFor();
  await screenshot('leak-report');
  const after = await call('GET', '/users/me', { token: minted.body.secret });
  assert.equal(after.status, 401);
  assert.equal(after.body.code, 'token_leaked');
});

test('a pre-filled creation link opens Generate with the name, scope and expiry', async () => {
  await page.goto(`${BASE}/console/#/tokens/new?name=ci-link&scope_set=read-only&expires_in=10d`);
  const d = dialog('Generate a token');
  await d.waitFor();
  assert.equal(await d.getByLabel('Name', { exact: true }).inputValue(), 'ci-link');
  assert.equal(await d.getByLabel('API access', { exact: true }).inputValue(), 'set:read-only');
  const expected = new Date(Date.now() + 10 * 86400000);
  const pad = (n) => String(n).padStart(2, '0');
  assert.equal(await d.getByLabel('Expires on', { exact: true }).inputValue(),
    `${expected.getFullYear()}-${pad(expected.getMonth() + 1)}-${pad(expected.getDate())}`);
  await screenshot('prefilled-generate');
  await d.getByRole('button', { name: 'Generate', exact: true }).click();
  await confirmIfAsked(ADMIN_PASSWORD);
  await readSecret();
  await closeSecret();
  await row('ci-link').waitFor();
  assert.equal(new URL(page.url()).hash, '#/tokens');
});

test('an invalid session sends the person back to sign-in with a message', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My tokens' }).click();
  await row('ci-deploy').waitFor();
  await page.evaluate(() => {
    const s = JSON.parse(sessionStorage.getItem('sigil.session'));
    s.token = 'not-a-token';
    sessionStorage.setItem('sigil.session', JSON.stringify(s));
  });
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByRole('heading', { name: 'Sign in to Sigil' }).waitFor();
  await page.getByText('Your session is no longer valid').waitFor();
  await screenshot('session-invalid');
});

test('a member sees only their own tokens and no admin pages; profile edits are saved', async () => {
  await signIn('bob', BOB_PASSWORD);
  await row('bob-ci').waitFor();
  await row('bob-by-admin').waitFor();
  assert.equal(await row('ci-deploy').count(), 0);
  assert.equal(await page.locator('#nav-admin').count(), 0);
  assert.equal(await page.getByRole('link', { name: 'API tokens' }).count(), 0);

  await page.getByRole('link', { name: 'My profile' }).click();
  await page.getByRole('heading', { name: 'Contact' }).waitFor();
  await page.getByLabel('Display name', { exact: true }).fill('Robert Builder');
  await page.getByRole('button', { name: 'Save contact' }).click();
  await page.getByText('Contact saved.').waitFor();
  const me = await call('GET', '/users/me', { token: bob.session });
  assert.equal(me.body.user.display_name, 'Robert Builder');
  await screenshot('member-profile');
});

test('phone width: no horizontal scrolling, dialogs fit', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('link', { name: 'My tokens' }).click();
  await row('bob-ci').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await screenshot('phone-tokens');
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const d = dialog('Generate a token');
  await d.getByLabel('API access', { exact: true }).selectOption({ label: 'Custom: choose methods' });
  const box = await d.boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390, 'the dialog fits the screen');
  await screenshot('phone-generate', { fullPage: false });
  await d.getByRole('button', { name: 'Cancel' }).click();
});

// --- Two-factor sign-in (TOTP). Codes are computed here from the enrolment's secret,
// as an authenticator app computes them (RFC 6238: HMAC-SHA1, 6 digits, 30 s).

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The code of the time step `offset` steps from now. */
function totpCode(secret, offset = 0) {
  const step = Math.floor(Date.now() / 1000 / 30) + offset;
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const at = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const TARA_PASSWORD = 'Silver-Otter-Meadow-83';
let taraSecret;
let taraRecovery;

test('two-factor enrolment from the profile: QR code, first code, recovery codes shown once', async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto('about:blank');
  const created = await call('POST', '/users', {
    token: adminSession,
    body: { username: 'tara', display_name: 'Tara Two-Factor', password: TARA_PASSWORD, role: 'member' },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await signIn('tara', TARA_PASSWORD);
  await page.getByRole('link', { name: 'My profile' }).click();
  await page.getByRole('heading', { name: 'Two-factor sign-in' }).waitFor();
  await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const qr = page.getByRole('img', { name: 'QR code for the authenticator app' });
  await qr.waitFor();
  assert.ok(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code is shown');
  taraSecret = await page.locator('.totp-secret').getAttribute('data-secret');
  assert.match(taraSecret, /^[A-Z2-7]{32}$/);
  await screenshot('two-factor-enrol');
  // A wrong code is refused in plain words.
  await page.getByLabel('Code from the app', { exact: true }).fill(totpCode(taraSecret, 5));
  await page.getByLabel('Password', { exact: true }).fill(TARA_PASSWORD);
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByText('the code is wrong or too old').waitFor();
  await page.getByLabel('Code from the app', { exact: true }).fill(totpCode(taraSecret, 0));
  await page.getByRole('button', { name: 'Turn on' }).click();
  const d = dialog('Your recovery codes');
  await d.waitFor();
  taraRecovery = await d.locator('ol.recovery-codes code').allTextContents();
  assert.equal(taraRecovery.length, 10);
  await d.getByRole('button', { name: 'Copy' }).click();
  await d.getByText('Copied to the clipboard.').waitFor();
  assert.ok((await page.evaluate(() => navigator.clipboard.readText())).includes(taraRecovery[9]));
  const [download] = await Promise.all([page.waitForEvent('download'), d.getByRole('button', { name: 'Download' }).click()]);
  assert.equal(download.suggestedFilename(), 'sigil-recovery-codes.txt');
  assert.ok(fs.readFileSync(await download.path(), 'utf8').includes(taraRecovery[0]));
  await screenshot('two-factor-recovery-codes');
  await d.getByRole('button', { name: 'Done' }).click();
  await page.getByText('Two-factor sign-in is on.').waitFor();
  await page.getByText('10 recovery codes left.').waitFor();
});

test('sign-in asks for the code after the password; a recovery code works once', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Tenant', { exact: true }).fill(TENANT);
  await page.getByLabel('Username', { exact: true }).fill('tara');
  await page.getByLabel('Password', { exact: true }).fill(TARA_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Two-factor sign-in' }).waitFor();
  await screenshot('two-factor-sign-in');
  // The enrolment's code was used: refused.
  await page.getByLabel('Authentication code', { exact: true }).fill(totpCode(taraSecret, 0));
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByText('this code was already used').waitFor();
  await page.getByLabel('Authentication code', { exact: true }).fill(totpCode(taraSecret, 1));
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('heading', { name: 'My tokens' }).waitFor();

  // Again, with a recovery code.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Username', { exact: true }).fill('tara');
  await page.getByLabel('Password', { exact: true }).fill(TARA_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Use a recovery code instead' }).click();
  await page.getByLabel('Recovery code', { exact: true }).fill(taraRecovery[0]);
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('heading', { name: 'My tokens' }).waitFor();
  await page.getByRole('link', { name: 'My profile' }).click();
  await page.getByText('9 recovery codes left.').waitFor();

  // The administrator sees the status and can reset it.
  const users = await call('GET', '/users?two_factor=true', { token: adminSession });
  assert.deepEqual(users.body.items.map((u) => u.username), ['tara']);
  const events = await call('GET', '/audit-events?action=user.two_factor.recovery_code_used', { token: adminSession });
  assert.equal(events.body.items.length, 1);
});

test('the admin requires two-factor sign-in; a member without it can only enrol', async () => {
  // The admin enrols through the API (as a script would), then switches the policy on.
  const begun = await call('POST', '/users/me/two-factor/totp', { token: adminSession });
  assert.equal(begun.status, 200, JSON.stringify(begun.body));
  const adminSecret = begun.body.secret;
  const on = await call('POST', '/users/me/two-factor/totp/confirm', { token: adminSession, body: { code: totpCode(adminSecret, 0), password: ADMIN_PASSWORD } });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Username', { exact: true }).fill('admin');
  await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByLabel('Authentication code', { exact: true }).fill(totpCode(adminSecret, 1));
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('heading', { name: 'My tokens' }).waitFor();
  await page.getByRole('link', { name: 'Policy' }).click();
  const flag = page.getByLabel(/Every person signs in with two-factor authentication/);
  await flag.check();
  await page.getByRole('button', { name: 'Save policy' }).click();
  await page.getByText('Policy saved.').waitFor();
  await page.getByRole('link', { name: 'Users' }).click();
  await row('tara').getByText('On', { exact: true }).waitFor();
  await screenshot('two-factor-users');

  // Bob signs in to a session that can only set up two-factor sign-in.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Username', { exact: true }).fill('bob');
  await page.getByLabel('Password', { exact: true }).fill(BOB_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Set up two-factor sign-in' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'My tokens' }).count(), 0);
  await page.goto(`${BASE}/console/#/tokens`);
  await page.getByRole('heading', { name: 'Set up two-factor sign-in' }).waitFor();
  await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const bobSecret = await page.locator('.totp-secret').getAttribute('data-secret');
  await page.getByLabel('Code from the app', { exact: true }).fill(totpCode(bobSecret, 0));
  await page.getByLabel('Password', { exact: true }).fill(BOB_PASSWORD);
  await page.getByRole('button', { name: 'Turn on' }).click();
  await dialog('Your recovery codes').getByRole('button', { name: 'Done' }).click();
  await page.getByRole('heading', { name: 'My tokens' }).waitFor();
  await row('bob-ci').waitFor();
  await screenshot('two-factor-enrolled-by-policy');

  // Password confirmation asks for a code too.
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const g = dialog('Generate a token');
  await g.getByLabel('Name', { exact: true }).fill('bob-2fa');
  await g.getByLabel('API access', { exact: true }).selectOption('set:read-only');
  await g.getByRole('button', { name: 'Generate', exact: true }).click();
  const confirm = dialog('Confirm your password');
  await confirm.getByLabel('Password', { exact: true }).fill(BOB_PASSWORD);
  await confirm.getByLabel('Authentication code', { exact: true }).fill(totpCode(bobSecret, 1));
  await confirm.getByRole('button', { name: 'Confirm' }).click();
  await readSecret();
  await closeSecret();
  await row('bob-2fa').waitFor();

  // Leave the tenant as the other tests expect it.
  const off = await call('PUT', '/tenant/policy', { token: adminSession, body: { ...(await call('GET', '/tenant', { token: adminSession })).body.policy, require_two_factor: false } });
  assert.equal(off.status, 200, JSON.stringify(off.body));
});
