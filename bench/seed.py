#!/usr/bin/env python3
"""Seeds a running Sigil server for bench/load.sh (standard library only).

Logs in as the tenant admin, confirms the password, raises the tenant's token limit,
creates the owners, and mints (through createToken) the tokens the load scenarios use:
a minter token holding `tokens.create` (so minting needs no password confirmation), one
hot Extended Access token, a `me.get` token, and N distinct Extended Access tokens for the
cache scenario (minted in parallel over keep-alive connections).

Usage: seed.py BASE_URL TENANT PASSWORD OUT_DIR N_TOKENS
Writes OUT_DIR/{minter,hot,me,introspector}.token, OUT_DIR/tokens.txt, OUT_DIR/mint_owners.txt and
prints one `seed: ...` line with the minting rate.
"""

import datetime
import http.client
import json
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

MINT_OWNERS = 20  # owners the createToken scenario rotates over (token limit per user)
VERIFY_OWNERS = 2  # owners of the N distinct tokens
WORKERS = 8

base, tenant, password, out_dir, n_tokens = sys.argv[1:6]
n_tokens = int(n_tokens)
url = urllib.parse.urlsplit(base)
local = threading.local()


def conn():
    c = getattr(local, "conn", None)
    if c is None:
        c = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        local.conn = c
    return c


def call(method, path, token=None, body=None, expect=(200, 201)):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    for attempt in range(3):
        try:
            c = conn()
            c.request(method, path, body=data, headers=headers)
            resp = c.getresponse()
            text = resp.read()
            break
        except (http.client.HTTPException, OSError):
            local.conn = None
            if attempt == 2:
                raise
    if resp.status not in expect:
        sys.exit(f"seed: {method} {path} -> {resp.status}: {text[:300]!r}")
    return json.loads(text) if text else None


def expiry(days):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


session = call(
    "POST",
    "/api/v1/auth/login",
    body={"tenant": tenant, "username": "admin", "password": password},
)["token"]
call("POST", "/api/v1/auth/confirm-password", session, {"password": password})

policy = call("GET", "/api/v1/tenant", session)["policy"]
policy["max_tokens_per_user"] = 10000
call("PUT", "/api/v1/tenant/policy", session, policy)


def user(name):
    return call(
        "POST", "/api/v1/users", session, {"username": name, "role": "member"}
    )["id"]


verify_owners = [user(f"verify-{i}") for i in range(1, VERIFY_OWNERS + 1)]
mint_owners = [user(f"mint-{i}") for i in range(1, MINT_OWNERS + 1)]

extended = {"scope_set": "platform.extended-access", "expires_at": expiry(30)}
minter = call(
    "POST",
    "/api/v1/tokens",
    session,
    {
        "name": "bench-minter",
        "methods": [
            "tokens.create",
            "platform.environment.*",
            "platform.marketplace.*",
            "platform.users.account.getbalance",
        ],
        "expires_at": expiry(60),
    },
)["secret"]
hot = call(
    "POST",
    "/api/v1/tokens",
    minter,
    dict(extended, name="bench-hot", owner_id=verify_owners[0]),
)["secret"]
me = call(
    "POST",
    "/api/v1/tokens",
    session,
    {"name": "bench-me", "methods": ["me.get"], "expires_at": expiry(30)},
)["secret"]
introspector = call(
    "POST",
    "/api/v1/tokens",
    session,
    {"name": "bench-introspector", "methods": ["sigil.introspect"], "expires_at": expiry(30)},
)["secret"]


def mint(i):
    body = dict(extended, name=f"bench-{i}", owner_id=verify_owners[i % VERIFY_OWNERS])
    return call("POST", "/api/v1/tokens", minter, body)["secret"]


started = time.monotonic()
with ThreadPoolExecutor(WORKERS) as pool:
    secrets = list(pool.map(mint, range(n_tokens)))
elapsed = time.monotonic() - started
assert len(set(secrets)) == n_tokens


def write(name, text):
    with open(f"{out_dir}/{name}", "w") as f:
        f.write(text)


write("minter.token", minter)
write("hot.token", hot)
write("me.token", me)
write("introspector.token", introspector)
write("tokens.txt", "\n".join(secrets) + "\n")
write("mint_owners.txt", "\n".join(mint_owners) + "\n")
print(
    f"seed: minted {n_tokens} distinct tokens in {elapsed:.1f} s "
    f"({n_tokens / elapsed:.0f} tokens/s, {WORKERS} parallel clients)"
)
