"""Schemathesis hooks for Sigil's schema fuzzing (.ci/e2e/schemathesis.sh).

Loaded through SCHEMATHESIS_HOOKS. The environment says who calls:

- SIGIL_FUZZ_AS=admin: the tenant admin. A login session is made here (login, then
  confirmPassword, so token changes are allowed) and renewed every REFRESH_SECS (the
  confirmation window can be as short as 30 seconds once updateTenantPolicy was fuzzed) and
  whenever an answer is 401 (schemathesis replays that request once with the new session):
  rotateSigningKey with no overlap, deleting or regenerating the session, a shorter session
  lifetime all end the session in use, as they should.
- SIGIL_FUZZ_AS=operator: the platform operator, with the token in SIGIL_OPERATOR_TOKEN.

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


@schemathesis.auth(refresh_interval=REFRESH_SECS)
class SigilAuth:
    def get(self, case, ctx):
        if FUZZ_AS == "operator":
            return os.environ["SIGIL_OPERATOR_TOKEN"]
        return admin_session()

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
    if params and not negative:
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
    return case
