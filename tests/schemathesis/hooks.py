"""Schemathesis hooks for Sigil's schema fuzzing (.ci/e2e/schemathesis.sh).

Loaded through SCHEMATHESIS_HOOKS. The environment says who calls:

- SIGIL_FUZZ_AS=admin: the tenant admin. A login session is made here (login, then
  confirmPassword, so token changes are allowed) and renewed every REFRESH_SECS (the
  confirmation window can be as short as 30 seconds once updateTenantPolicy was fuzzed) and
  whenever an answer is 401 (schemathesis replays that request once with the new session):
  rotateSigningKey with no overlap, deleting or regenerating the session, a shorter session
  lifetime all end the session in use, as they should.
- SIGIL_FUZZ_AS=operator: the platform operator, with the token in SIGIL_OPERATOR_TOKEN.
"""

import json
import os
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["SIGIL_URL"].rstrip("/")
FUZZ_AS = os.environ.get("SIGIL_FUZZ_AS", "admin")
REFRESH_SECS = 25


def _post(path, body, token=None):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"POST {path}: {e.code} {e.read().decode(errors='replace')}") from e


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


@schemathesis.hook
def map_case(ctx, case):
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
