# Shared by the end-to-end checks (sourced, not run: .ci/run runs only .ci/e2e/*.sh).
# Builds the CLI, starts `sigil serve` on a free loopback port with a fresh SQLite data
# directory and the example plugin, and stops it again on exit.
#
#   source .ci/e2e/lib/sigil.sh
#   sigil_build; sigil_start "$LOG_FILE"; sigil_tenant_create acme  # -> $TENANT_JSON
#
# Sets BIN, SIGIL_URL (and exports SIGIL_DATA_DIR etc. for the CLI), SERVER_PID.

step() { printf '\n==> %s\n' "$*"; }

SIGIL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BIN=$SIGIL_ROOT/target/debug/sigil
SERVER_PID=
SIGIL_E2E_DATA=

sigil_build() {
  step "cargo build -p sigil"
  (cd "$SIGIL_ROOT" && cargo build -p sigil)
}

sigil_stop() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  if [ -n "$SIGIL_E2E_DATA" ]; then rm -rf "$SIGIL_E2E_DATA"; fi
}

# json_get FIELD.PATH < JSON: prints one value of a JSON document.
json_get() {
  python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}

# sigil_start LOG_FILE: starts the server and waits until /readyz answers 200.
sigil_start() {
  local log=$1
  SIGIL_E2E_DATA=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  export SIGIL_DATA_DIR=$SIGIL_E2E_DATA
  export SIGIL_LISTEN=127.0.0.1:$port
  export SIGIL_PUBLIC_URL=http://127.0.0.1:$port
  export SIGIL_LOG_LEVEL=${SIGIL_LOG_LEVEL:-info}
  unset SIGIL_DATABASE_URL SIGIL_PLUGINS
  SIGIL_URL=http://127.0.0.1:$port
  step "start sigil on $SIGIL_URL"
  "$BIN" serve --plugin "$SIGIL_ROOT/examples/plugins/platform.json" >"$log" 2>&1 &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 120); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)' "$SIGIL_URL/readyz" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "the server did not become ready; its log:" >&2
  cat "$log" >&2
  return 1
}

# sigil_tenant_create SLUG: creates a tenant and its first admin; sets TENANT_JSON and
# ADMIN_PASSWORD.
sigil_tenant_create() {
  step "create tenant $1"
  # Log lines may share stdout with the JSON: keep from the first line that opens it.
  TENANT_JSON=$("$BIN" tenant create "$1" 2>/dev/null | sed -n '/^{/,$p')
  ADMIN_PASSWORD=$(printf '%s' "$TENANT_JSON" | json_get admin_password)
  [ -n "$ADMIN_PASSWORD" ] || { echo "no admin_password in: $TENANT_JSON" >&2; return 1; }
}
