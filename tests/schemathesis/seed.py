"""Seeds objects for the schema fuzzing (.ci/e2e/schemathesis.sh) and prints their ids as
JSON, by path parameter, for SIGIL_FUZZ_IDS: generated bodies rarely make a valid object
(a token needs a known scope and an expiry within the policy), so without these the
operations on one object would only see unknown ids.

    python seed.py admin      # tokens, scope sets, users and a plugin of the tenant
    python seed.py operator   # a second tenant (the operator may disable it)
"""

import datetime
import json
import os
import sys

from hooks import admin_session, call


def admin():
    session = admin_session()
    ids = {}

    def add(name, value, doomed):
        ids.setdefault(f"{name}@delete" if doomed else name, []).append(value)

    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    for i in range(3):
        s = call(
            "POST",
            "/api/v1/scope-sets",
            {"id": f"fuzz-seed-{i}", "name": f"Fuzz seed {i}", "methods": ["me.get", "tokens.*"]},
            session,
        )
        add("set_id", s["id"], doomed=i == 2)
    scopes = [{"read": True}, {"change": True}, {"scope_set": "fuzz-seed-0"}, {"methods": ["me.get"]}]
    for i, scope in enumerate(scopes * 2):
        t = call("POST", "/api/v1/tokens", {"name": f"fuzz-seed-{i}", "expires_at": expires, **scope}, session)
        add("token_id", t["token"]["id"], doomed=i >= len(scopes))
    for i, role in enumerate(["member", "token_manager", "member", "member"]):
        u = call("POST", "/api/v1/users", {"username": f"fuzz-seed-{i}", "role": role}, session)
        add("user_id", u["id"], doomed=i >= 2)
    for i in range(2):
        manifest = {
            "id": f"fuzzseed{i}",
            "name": f"Fuzz seed {i}",
            "version": "1.0.0",
            "methods": [
                {"id": f"fuzzseed{i}.things.list", "http": {"method": "GET", "path": f"/{i}/things"}, "access": "read"},
                {"id": f"fuzzseed{i}.things.create", "http": {"method": "POST", "path": f"/{i}/things"}, "access": "change"},
            ],
        }
        p = call("POST", "/api/v1/plugins", {"manifest": manifest}, session)
        add("plugin_id", p["plugin"]["id"], doomed=i == 1)
    return ids


def operator():
    token = os.environ["SIGIL_OPERATOR_TOKEN"]
    t = call("POST", "/api/v1/tenants", {"slug": "fuzz-target", "name": "Fuzz target"}, token)
    return {"tenant_id": [t["tenant"]["id"]], "plugin_id": ["platform"], "plugin_id@delete": ["platform"]}


def admin_again():
    """Objects for the member and app passes: the admin pass has used up its own."""
    session = admin_session()
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).isoformat()
    ids = {}
    # The callers of the member and app passes (hooks.CALLERS), made after the admin pass
    # (which may deactivate any user it finds). Neither is an admin, so the tenant keeps
    # one admin, who cannot be deleted or demoted.
    call("POST", "/api/v1/users", {"username": "fuzz-member", "role": "member"}, session)
    call("POST", "/api/v1/users", {"username": "fuzz-app", "role": "token_manager", "kind": "api"}, session)
    for i in range(4):
        t = call("POST", "/api/v1/tokens", {"name": f"fuzz-again-{i}", "expires_at": expires, "read": True}, session)
        ids.setdefault("token_id" if i < 2 else "token_id@delete", []).append(t["token"]["id"])
    users = call("GET", "/api/v1/users?limit=200", token=session)["items"]
    ids["user_id"] = [u["id"] for u in users if u["username"].startswith("fuzz-")][:4]
    return ids


if __name__ == "__main__":
    print(json.dumps({"admin": admin, "admin-again": admin_again, "operator": operator}[sys.argv[1]]()))
