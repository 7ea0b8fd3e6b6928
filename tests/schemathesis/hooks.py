"""Schemathesis hooks for Sigil's schema fuzzing (.ci/e2e/schemathesis.sh).

Loaded through SCHEMATHESIS_HOOKS. The environment says who calls:

- SIGIL_FUZZ_AS=admin: the tenant admin. A login session is made here (login, then
  confirmPassword, so token changes are allowed) and renewed every REFRESH_SECS (the
  confirmation window can be as short as 30 seconds once updateTenantPolicy was fuzzed) and
  whenever an answer is 401 (schemathesis replays that request once with the new session):
  rotateSigningKey with no overlap, deleting or regenerating the session, a shorter session
  lifetime all end the session in use, as they should.
- SIGIL_FUZZ_AS=operator: the platform operator, with the token in SIGIL_OPERATOR_TOKEN.
- SIGIL_FUZZ_AS=member / app: a fresh personal token of a member, or application token of
  an api user (seed.py makes both users), renewed like the admin's session.

Besides, path parameters name existing objects part of the time (seeded by seed.py, or
created by the run), and two generated requests are adjusted so that one request cannot
end the run's usefulness: see map_case. Nothing here loosens a check.
"""

import json
import os
import random
import urllib.error
import urllib.request
import uuid

import schemathesis
from schemathesis.core.parameters import ParameterLocation

BASE = os.environ["SIGIL_URL"].rstrip("/")
FUZZ_AS = os.environ.get("SIGIL_FUZZ_AS", "admin")
REFRESH_SECS = 25


def call(method, path, body=None, token=None):
    """One request; the JSON answer (None when empty), or an error naming the status."""
    req = urllib.request.Request(
        BASE + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}") from e


def _post(path, body, token=None):
    return call("POST", path, body, token)


def admin_session():
    """A confirmed login session of the tenant admin."""
    tenant = os.environ["SIGIL_TENANT"]
    password = os.environ["SIGIL_ADMIN_PASSWORD"]
    token = _post(
        "/api/v1/auth/login",
        {"tenant": tenant, "username": os.environ.get("SIGIL_ADMIN_USER", "admin"), "password": password},
    )["token"]
    _post("/api/v1/auth/confirm-password", {"password": password}, token)
    return token


def owned_token(username, kind):
    """A fresh token of the user `username` (made by the admin; a member's token can do no
    more than the member may), so that every kind of caller meets every operation: a
    member's personal token, an api user's application token."""
    import datetime

    session = admin_session()
    users = call("GET", f"/api/v1/users?q={username}", token=session)["items"]
    owner = next(u for u in users if u["username"] == username)
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).isoformat()
    body = {"name": f"fuzz-{kind}-{uuid.uuid4().hex[:8]}", "kind": kind, "owner_id": owner["id"],
            "read": True, "change": True, "expires_at": expires}
    return call("POST", "/api/v1/tokens", body, session)["secret"]


# The callers of the passes (.ci/e2e/schemathesis.sh): SIGIL_FUZZ_AS.
CALLERS = {
    "operator": lambda: os.environ["SIGIL_OPERATOR_TOKEN"],
    "admin": admin_session,
    "member": lambda: owned_token("fuzz-member", "personal"),
    "app": lambda: owned_token("fuzz-app", "application"),
}


@schemathesis.auth(refresh_interval=REFRESH_SECS)
class SigilAuth:
    def get(self, case, ctx):
        return CALLERS[FUZZ_AS]()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _operation_id(case):
    return (case.operation.definition.raw or {}).get("operationId")


# Ids of objects this run created, by path parameter: without them every generated id is
# unknown and the operations on one object (getToken, updateToken, regenerateToken, ...)
# would only ever answer 404.
# The script seeds a few of each (SIGIL_FUZZ_IDS, from seed.py); what the run creates joins.
# Ids under "NAME@delete" are for the delete operations only.
CREATED = {"token_id": [], "set_id": [], "user_id": [], "plugin_id": [], "tenant_id": []}
for _name, _ids in json.loads(os.environ.get("SIGIL_FUZZ_IDS") or "{}").items():
    CREATED.setdefault(_name, []).extend(_ids)
# Chance that a path parameter names a created object instead of the generated value.
USE_CREATED = 0.6


def _remember(name, value):
    ids = CREATED.setdefault(name, [])
    if isinstance(value, str) and value not in ids:
        ids.append(value)
        del ids[:-50]


@schemathesis.hook
def after_call(ctx, case, response):
    if response.status_code not in (200, 201):
        return
    try:
        body = response.json()
    except Exception:
        return
    if not isinstance(body, dict):
        return
    op = _operation_id(case)
    if op in ("createToken", "copyToken"):
        _remember("token_id@delete", (body.get("token") or {}).get("id"))
    elif op == "createScopeSet":
        _remember("set_id@delete", body.get("id"))
    elif op == "createUser":
        _remember("user_id@delete", body.get("id"))
    elif op == "registerPlugin":
        _remember("plugin_id@delete", (body.get("plugin") or {}).get("id"))
    elif op == "createTenant":
        _remember("tenant_id", (body.get("tenant") or {}).get("id"))


@schemathesis.hook
def map_case(ctx, case):
    params = case.path_parameters
    meta = getattr(case, "meta", None)
    negative = meta is not None and meta.is_negative_at(ParameterLocation.PATH)
    # The stateful phase follows the ids its links carry (a created object, then its
    # reads and deletion): those are left as they are.
    stateful = meta is not None and str(getattr(meta.phase, "name", "")) == "stateful"
    if params and not negative and not stateful:
        op = _operation_id(case) or ""
        for name in params:
            # Deletions take their own objects, so the others keep theirs.
            ids = CREATED.get(f"{name}@delete" if op.startswith("delete") else name)
            if ids:
                # Seeded by the drawn value, so a run with the same seed picks alike.
                pick = random.Random(f"{op}:{params[name]}")
                if pick.random() < USE_CREATED:
                    params[name] = pick.choice(ids)
    # Bulk deletion takes its ids from answers too (listTokens): spare the seeded tokens
    # the other operations work on.
    if _operation_id(case) == "deleteTokens" and isinstance(case.body, dict):
        ids = case.body.get("ids")
        if isinstance(ids, list):
            case.body["ids"] = [
                str(uuid.uuid5(uuid.NAMESPACE_OID, i)) if i in CREATED["token_id"] else i for i in ids
            ]
    # updateTenantPolicy may set an IP allowlist that shuts this machine out, after which
    # every later request is refused and nothing more is tested. Keep loopback in a list
    # the fuzzer drew (its own entries are still sent and still validated).
    if _operation_id(case) == "updateTenantPolicy" and isinstance(case.body, dict):
        allow = case.body.get("ip_allowlist")
        if isinstance(allow, list) and allow and all(isinstance(a, str) for a in allow):
            # At most 100 entries: a longer list stays as drawn (it must be refused).
            if len(allow) < 100:
                case.body["ip_allowlist"] = allow + ["127.0.0.0/8"]
            elif len(allow) == 100:
                case.body["ip_allowlist"] = allow[:99] + ["127.0.0.0/8"]
    # Nor may one policy make every later token request fail: room for the run's tokens
    # (count, lifetime of the seeded ones), and the tenant's admin still able to sign in
    # without a second factor it cannot have. Positive cases only: a negative one is
    # refused whatever it holds.
    positive = meta is not None and meta.generation.mode.is_positive
    if _operation_id(case) == "updateTenantPolicy" and isinstance(case.body, dict) and positive:
        body = case.body
        if type(body.get("max_tokens_per_user")) is int and body["max_tokens_per_user"] < 1000:
            body["max_tokens_per_user"] = min(10_000, body["max_tokens_per_user"] + 1000)
        if type(body.get("max_token_lifetime_days")) is int and body["max_token_lifetime_days"] < 60:
            body["max_token_lifetime_days"] += 60
        if body.get("require_two_factor") is True:
            body["require_two_factor"] = False
    if positive:
        _harmless_limits(case)
    _spare_the_admin(case)
    if meta is not None and meta.generation.mode.is_positive:
        _make_realistic(case)
    return case


_LIMIT_OPS = ("createToken", "updateToken", "updateUser", "updateTenantPolicy")


def _harmless_limits(case):
    """Usage limits a generated request sets (on the run's own tokens, its users, or the
    tenant's defaults) could make every later call of the run answer 429, which tests
    nothing more. In schema-valid cases the limits keep their shape but allow everything
    (the largest count, the largest balance), and the rules beyond the schema are kept:
    names unique per holder, a day of the month only for a monthly refill."""
    if _operation_id(case) not in _LIMIT_OPS or not isinstance(case.body, dict):
        return
    body = case.body
    for key in ("rate_limits", "default_token_rate_limits", "default_owner_rate_limits"):
        limits = body.get(key)
        if isinstance(limits, list):
            seen = set()
            for i, limit in enumerate(limits):
                if isinstance(limit, dict):
                    limit["limit"] = 1_000_000_000
                    limit["window_secs"] = 1
                    # A holder's limit names are unique (a rule the schema cannot state):
                    # a repeated name gets the entry's index.
                    name = limit.get("name")
                    if isinstance(name, str) and name in seen:
                        limit["name"] = f"{name[:24]}-{i}"
                    seen.add(limit.get("name"))
    credits = body.get("credits")
    if isinstance(credits, dict):
        credits["remaining"] = 1_000_000_000_000_000
        refill = credits.get("refill")
        if isinstance(refill, dict):
            refill["amount"] = 1_000_000_000_000_000
            # Only a monthly refill takes a day of the month (a rule across two fields).
            if refill.get("interval") == "daily":
                refill.pop("day", None)


_ADMIN_ID = []


def _spare_the_admin(case):
    """The admin whose session every pass uses is not demoted, deactivated, deleted or
    given a new password by a generated request (another user takes its place): that would
    end the run's usefulness, not test anything more."""
    op = _operation_id(case)
    if op not in ("updateUser", "deactivateUser", "deleteUser", "resetUserTwoFactor") or FUZZ_AS == "operator":
        return
    if not _ADMIN_ID:
        _ADMIN_ID.append(call("GET", "/api/v1/users/me", token=admin_session())["user"]["id"])
    params = case.path_parameters or {}
    if params.get("user_id") == _ADMIN_ID[0]:
        others = CREATED.get("user_id@delete" if op == "deleteUser" else "user_id") or [str(uuid.uuid4())]
        params["user_id"] = others[0]


# --- Positive data that the server's rules beyond the schema accept -----------------------
# The spec says what a request looks like; some rules depend on stored state or on other
# fields, which OpenAPI 3.0 cannot say (a method id must exist in the registry, an expiry
# must lie within the tenant policy of the moment, a password must not contain the
# username, exactly one of manifest/openapi). schemathesis's own advice for this is to
# extend the generators to match the runtime rules: for schema-valid cases (positive
# mode) only, the values those rules judge are replaced by realistic ones below, so that
# positive_data_acceptance judges the rest of the request. Negative cases are untouched.

_KNOWN_METHODS = []
# No letter, digit, '.', '_', '-' or '@': cannot contain any username.
_STRONG_PASSWORD = "!#$%&*+=?^~!#$%&*+=?^~"


def _known_methods():
    if not _KNOWN_METHODS:
        token = _credential()
        offset = 0
        while True:
            page = call("GET", f"/api/v1/methods?limit=200&offset={offset}", token=token)
            _KNOWN_METHODS.extend(m["id"] for m in page["items"] if not m["id"].startswith("sigil."))
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
    return _KNOWN_METHODS


def _credential():
    return os.environ["SIGIL_OPERATOR_TOKEN"] if FUZZ_AS == "operator" else admin_session()


def _soon():
    import datetime

    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()


def _pick(seed, items):
    return random.Random(str(seed)).choice(items)


_OWNER = []


def _owner_credential():
    """A credential of the pass's caller that can make tokens the caller may then see."""
    if FUZZ_AS in ("admin", "operator"):
        return admin_session()
    if not _OWNER:
        _OWNER.append(CALLERS[FUZZ_AS]())
    return _OWNER[0]


def _fresh_tokens(count):
    """Tokens made for this case alone (to copy or delete), owned as the pass's caller
    would own them: an hour of life fits every policy."""
    ids = []
    for attempt in range(2):
        try:
            session = _owner_credential()
            while len(ids) < count:
                body = {"name": f"fuzz-fresh-{uuid.uuid4().hex[:8]}", "read": True, "expires_at": _soon()}
                ids.append(call("POST", "/api/v1/tokens", body, session)["token"]["id"])
            return ids
        except RuntimeError:
            # The caller's own token may have been deleted or revoked by the run: once more
            # with a new one.
            _OWNER.clear()
    return ids


def _valid_manifest(drawn, drawn_id=None):
    """A manifest the registry accepts, with the drawn plugin id (the spec's pattern makes
    it a valid one; the stateful phase follows it to getPlugin and deletePlugin)."""
    raw = drawn.get("id") if isinstance(drawn, dict) else drawn_id
    plugin = str(raw or f"fz{uuid.uuid4().hex[:8]}").strip()
    return {
        "id": plugin,
        "name": (str(drawn.get("name") or "").strip()[:100] if isinstance(drawn, dict) else "") or plugin,
        "version": "1.0.0",
        "methods": [
            {"id": f"{plugin}.items.list", "http": {"method": "GET", "path": f"/{plugin}/items"}, "access": "read"},
            {"id": f"{plugin}.items.create", "http": {"method": "POST", "path": f"/{plugin}/items"}, "access": "change"},
        ],
    }


def _make_realistic(case):
    op = _operation_id(case) or ""
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and isinstance(body.get("methods"), list) and op in (
        "createToken", "updateToken", "createScopeSet", "updateScopeSet"
    ):
        known = _known_methods()
        if known:
            body["methods"] = [_pick(f"{op}:{m}:{i}", known) for i, m in enumerate(body["methods"])]
    if op in ("createToken", "updateToken") and body is not None:
        if body.get("methods") is not None:
            body.pop("scope_set", None)
        elif body.get("scope_set") is not None:
            # A built-in set: the run may delete its own.
            body["scope_set"] = "read-only"
        elif op == "createToken" and not body.get("read") and not body.get("change"):
            body["read"] = True
        if op == "createToken":
            # The caller's own token: other owners are a question of state (an api user
            # for an application token, an active user), not of the request's shape.
            body.pop("owner_id", None)
            if body.get("kind") == "application":
                body["kind"] = "personal"
    if op in ("introspectToken", "login") and body is not None:
        # A form has no null: an absent field is what the schema's null means.
        for field in [k for k, v in body.items() if v is None]:
            del body[field]
        # The caller's credential travels in the Authorization header already; a client
        # sends it one way (two different ones are refused: multiple_credentials).
        body.pop("auth_token", None)
    if op == "introspectToken" and body is not None and body.get("method") is not None:
        body["method"] = _pick(f"introspect:{body['method']}", _known_methods())
    if op in ("createToken", "updateToken", "regenerateToken", "rotateCurrentToken") and body is not None:
        if op == "createToken" or "expires_at" in body:
            body["expires_at"] = _soon()
    if op == "regenerateToken" and body is not None and body.get("grace_period_secs") is not None:
        (case.query or {}).pop("grace_period_secs", None)
    # copyToken and deleteTokens get tokens made right before the call (before_call).
    if op in ("createUser", "updateUser", "createTenant") and body is not None:
        for field, user_field in (("password", "username"), ("admin_password", "admin_username")):
            password = body.get(field)
            if isinstance(password, str):
                name = str(body.get(user_field) or "admin").lower()
                if op == "updateUser" or name in password.lower():
                    body[field] = _STRONG_PASSWORD
    if op == "changePassword" and body is not None and isinstance(body.get("new_password"), str):
        body["new_password"] = _STRONG_PASSWORD
    if op == "registerPlugin" and body is not None:
        body["manifest"] = _valid_manifest(body.get("manifest"), body.get("id"))
        for field in ("openapi", "name", "version"):
            body.pop(field, None)
        # The same id at the top (ignored beside a manifest): what links infer from it
        # names the plugin made.
        body["id"] = body["manifest"]["id"]
    if op == "completeLogin" and body is not None:
        if body.get("code"):
            body.pop("recovery_code", None)
        elif not body.get("recovery_code"):
            body["code"] = "000000"
    if op == "updateWebhook" and body is not None and body.get("secret") is not None:
        body.pop("rotate_secret", None)
    if op in ("createWebhook", "updateWebhook") and body is not None and body.get("url") is not None:
        # The discard port of this machine: deliveries fail fast and are retried.
        body["url"] = f"http://127.0.0.1:9/{uuid.uuid4().hex[:8]}"


@schemathesis.hook
def before_call(ctx, case, *args):
    """Tokens to copy or delete, made right before the call (a case may be sent more than
    once): an hour of life fits every policy."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return
    # Again right before the call: the stateful phase fills bodies from its links after
    # map_case (a registerPlugin body of only an `id`, say).
    _make_realistic(case)
    _harmless_limits(case)
    op = _operation_id(case)
    if op == "copyToken" and case.path_parameters:
        fresh = _fresh_tokens(1)
        if fresh:
            case.path_parameters["token_id"] = fresh[0]
    if op == "deleteTokens" and isinstance(case.body, dict) and isinstance(case.body.get("ids"), list):
        fresh = _fresh_tokens(max(1, min(len(case.body["ids"]), 3)))
        if fresh:
            case.body["ids"] = fresh
