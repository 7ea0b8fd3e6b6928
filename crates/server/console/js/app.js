// The console shell: session, navigation and hash routes.

import { api, can, current, onConfirmationNeeded, onUnauthorized, session } from './api.js';
import { askPassword, errorBox, fill, h } from './ui.js';
import { renderLogin } from './pages/login.js';
import { renderProfile } from './pages/profile.js';
import { renderTokens } from './pages/tokens.js';
import { renderUsers } from './pages/users.js';
import { renderScopeSets } from './pages/scope-sets.js';
import { renderPlugins } from './pages/plugins.js';
import { renderPolicy, renderSigningKeys } from './pages/tenant.js';
import { renderWebhooks } from './pages/webhooks.js';
import { renderAudit } from './pages/audit.js';
import { renderHygiene } from './pages/hygiene.js';
import { renderLeaks } from './pages/leaks.js';

const NOTICE_KEY = 'sigil.notice';

const isManager = () => ['admin', 'token_manager'].includes(current.me?.role);

const routes = {
  '/login': { title: 'Sign in', public: true, render: renderLogin },
  '/profile': { title: 'My profile', nav: 'My profile', render: renderProfile },
  '/tokens': { title: 'My tokens', nav: 'My tokens', render: (main) => renderTokens(main, { all: false }) },
  // A pre-filled Generate dialog: #/tokens/new?name=ci&scope_set=platform.maven-plugin&expires_in=30d
  '/tokens/new': { title: 'Generate a token', render: (main) => renderTokens(main, { all: false, prefill: currentQuery() }) },
  '/hygiene': { title: 'Token hygiene', nav: 'Hygiene', visible: () => can('tokens.hygiene'), render: renderHygiene },
  '/audit': { title: 'Audit log', nav: 'Audit log', visible: () => can('audit.list'), render: renderAudit },
  '/leaks': { title: 'Report a leaked token', nav: 'Report a leak', visible: () => can('tokens.report_leaked'), render: renderLeaks },
  '/admin/tokens': { title: 'API tokens', nav: 'API tokens', admin: true, visible: isManager, render: (main) => renderTokens(main, { all: true }) },
  '/admin/users': { title: 'Users', nav: 'Users', admin: true, visible: () => isManager() && can('users.list'), render: renderUsers },
  '/admin/scope-sets': { title: 'Scope sets', nav: 'Scope sets', admin: true, visible: isManager, render: renderScopeSets },
  '/admin/plugins': { title: 'Plugins', nav: 'Plugins', admin: true, visible: () => isManager() && can('plugins.list'), render: renderPlugins },
  '/admin/policy': { title: 'Tenant policy', nav: 'Policy', admin: true, visible: isManager, render: renderPolicy },
  '/admin/webhooks': { title: 'Webhooks', nav: 'Webhooks', admin: true, visible: () => can('tenant.webhooks.list'), render: renderWebhooks },
  '/admin/signing-keys': { title: 'Signing keys', nav: 'Signing keys', admin: true, visible: () => isManager() && can('signing_keys.list'), render: renderSigningKeys },
};

const main = document.getElementById('main');

/** The query of the hash route (`#/tokens/new?name=ci` → {name: 'ci'}). */
function currentQuery() {
  const query = location.hash.replace(/^#/, '').split('?')[1] || '';
  return Object.fromEntries(new URLSearchParams(query));
}

function currentPath() {
  const path = location.hash.replace(/^#/, '').split('?')[0];
  return path || '/tokens';
}

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

/** Sends the person back to sign-in with a message (expired or invalid session). */
export function signOut(message) {
  session.clear();
  current.me = null;
  if (message) sessionStorage.setItem(NOTICE_KEY, message);
  go('/login');
}

const RETURN_KEY = 'sigil.return';

/** Where to go after sign-in when a link (a pre-filled token) led to the sign-in page. */
export function takeReturn() {
  const path = sessionStorage.getItem(RETURN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  return path;
}

/** Takes the one-time notice left for the sign-in page. */
export function takeNotice() {
  const notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  return notice;
}

/** Loads /users/me for the stored session; false when there is none or it is refused. */
export async function loadMe() {
  if (!session.get()?.token) return false;
  current.me = await api.get('/users/me');
  return true;
}

function renderChrome(path) {
  const nav = document.getElementById('nav');
  const account = document.getElementById('account');
  if (!current.me) {
    nav.hidden = true;
    account.hidden = true;
    return;
  }
  const link = (p, r) => h('a', { href: `#${p}`, 'aria-current': p === path ? 'page' : false }, r.nav);
  const enrolOnly = current.me.two_factor_enrolment_required;
  const entries = Object.entries(routes).filter(([p, r]) => r.nav && (!r.visible || r.visible()) && (!enrolOnly || p === '/profile'));
  const mine = entries.filter(([, r]) => !r.admin).map(([p, r]) => link(p, r));
  const admin = entries.filter(([, r]) => r.admin).map(([p, r]) => link(p, r));
  fill(nav, ...mine, ...(admin.length ? [h('span', { class: 'nav-group', id: 'nav-admin' }, 'Admin'), ...admin] : []));
  nav.hidden = false;
  const user = current.me.user;
  fill(account, 
    h('span', { class: 'muted' }, h('span', { class: 'sr-only' }, 'Signed in as '), `${user.display_name || user.username} · ${current.me.tenant}`),
    h('button', { type: 'button', class: 'small', onclick: () => signOut('You have signed out.') }, 'Sign out'),
  );
  account.hidden = false;
}

async function route() {
  const path = currentPath();
  let page = routes[path];
  if (!page) {
    go('/tokens');
    return;
  }
  if (!page.public && !current.me) {
    try {
      if (!(await loadMe())) {
        if (path === '/tokens/new') sessionStorage.setItem(RETURN_KEY, location.hash.replace(/^#/, ''));
        go('/login');
        return;
      }
    } catch (err) {
      if (!session.get()) return; // the 401 handler already went to sign-in
      fill(main, errorBox(err));
      return;
    }
  }
  // A session that may only enrol a second factor (tenant policy) stays on the profile.
  if (current.me?.two_factor_enrolment_required && !page.public && path !== '/profile') {
    go('/profile');
    return;
  }
  if (page.visible && !page.visible()) {
    page = routes['/tokens'];
  }
  document.title = `${page.title} · Sigil`;
  renderChrome(path);
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    await page.render(main);
  } catch (err) {
    if (!session.get() && !page.public) return;
    fill(main, errorBox(err));
  }
  const heading = main.querySelector('h1');
  if (heading && !main.contains(document.activeElement)) heading.focus({ preventScroll: true });
}

onUnauthorized((err) => {
  const why = err.code === 'token_expired'
    ? 'Your session has expired. Please sign in again.'
    : `Your session is no longer valid (${err.message}). Please sign in again.`;
  signOut(why);
});
onConfirmationNeeded(askPassword);
window.addEventListener('hashchange', route);
route();
