#!/usr/bin/env bash
# Browser tests of the web console: builds the server, starts it on a free port with a
# fresh data directory and the example plugin, creates the tenant `acme`, then drives
# the system Chromium through the console with playwright-core (tests/browser).
# Screenshots and the server log land in tests/artifacts/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ARTIFACTS=$ROOT/tests/artifacts

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "Chromium"
if ! command -v chromium >/dev/null 2>&1; then
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
CHROMIUM_PATH=${CHROMIUM_PATH:-$(command -v chromium)}
export CHROMIUM_PATH
"$CHROMIUM_PATH" --version || true

step "npm packages (tests/browser)"
(
  cd tests/browser
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
)

step "cargo build -p sigil"
cargo build -p sigil
BIN=$ROOT/target/debug/sigil

DATA=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

PORT=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
export SIGIL_DATA_DIR=$DATA
export SIGIL_LISTEN=127.0.0.1:$PORT
export SIGIL_PUBLIC_URL=http://127.0.0.1:$PORT
export SIGIL_PLUGINS=$ROOT/examples/plugins/platform.json
# The webhook tests deliver to a receiver on 127.0.0.1.
export SIGIL_WEBHOOK_ALLOW_PRIVATE=true
export SIGIL_LOG_LEVEL=${SIGIL_LOG_LEVEL:-info}
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

step "start sigil on port $PORT"
"$BIN" serve >"$ARTIFACTS/server.log" 2>&1 &
SERVER_PID=$!
ready=
for _ in $(seq 1 120); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  if node -e "fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" \
    "http://127.0.0.1:$PORT/readyz"; then ready=1; break; fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  echo "the server did not become ready; its log:" >&2
  cat "$ARTIFACTS/server.log" >&2
  exit 1
fi

step "create tenant acme"
# Log lines may share stdout with the JSON: keep from the first line that opens it.
TENANT_JSON=$("$BIN" tenant create acme 2>/dev/null | sed -n '/^{/,$p')
ADMIN_PASSWORD=$(printf '%s' "$TENANT_JSON" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).admin_password))")
[ -n "$ADMIN_PASSWORD" ] || { echo "no admin_password in: $TENANT_JSON" >&2; exit 1; }

step "browser tests"
(
  cd tests/browser
  SIGIL_URL=http://127.0.0.1:$PORT SIGIL_TENANT=acme SIGIL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
    ARTIFACTS=$ARTIFACTS node --test --test-concurrency=1 --test-reporter=spec console.test.js
)
echo "screenshots: $ARTIFACTS"
