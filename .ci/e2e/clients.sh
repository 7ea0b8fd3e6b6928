#!/usr/bin/env bash
# Generated clients: a Python client (openapi-python-client) and TypeScript types
# (openapi-typescript, called through openapi-fetch) are generated from the committed spec
# (openapi/sigil.json), and the same scenario runs with each against a live server: it
# calls every operationId of the spec through the generated code (operator operations with
# an operator token from `sigil operator token`), checks each typed answer and typed
# errors (Problem with its code), and fails if an operationId of the spec was not called.
# A generator warning fails the check: the spec must generate cleanly.
#
# Scenario code: tests/clients/{python,typescript}/ (committed, with the npm lockfile);
# generated code goes to their generated/ folders (git-ignored). The server log lands in
# tests/artifacts/clients/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source .ci/e2e/lib/sigil.sh

OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
ARTIFACTS=$ROOT/tests/artifacts/clients
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sigil-ci
VENV=$CACHE/openapi-python-client-$OPENAPI_PYTHON_CLIENT_VERSION
PY_DIR=$ROOT/tests/clients/python
TS_DIR=$ROOT/tests/clients/typescript
SPEC=$ROOT/openapi/sigil.json

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

step "openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION (venv in $VENV)"
if ! "$VENV/bin/openapi-python-client" --version 2>/dev/null | grep -q "$OPENAPI_PYTHON_CLIENT_VERSION"; then
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  # The generator brings httpx and attrs, which the generated client needs too.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION"
fi
"$VENV/bin/openapi-python-client" --version

step "generate the Python client"
rm -rf "$PY_DIR/generated"
mkdir -p "$PY_DIR/generated"
"$VENV/bin/openapi-python-client" generate --path "$SPEC" --config "$PY_DIR/config.yaml" \
  --meta none --output-path "$PY_DIR/generated/sigil_client" 2>&1 | tee "$ARTIFACTS/python-generate.log"
if grep -qiE 'warning|error|unable|could not' "$ARTIFACTS/python-generate.log"; then
  echo "openapi-python-client was not happy with openapi/sigil.json (see above)" >&2
  exit 1
fi

step "npm packages (tests/clients/typescript)"
(cd "$TS_DIR" && npm ci --no-audit --no-fund)

step "generate the TypeScript types and compile the scenario"
(
  cd "$TS_DIR"
  rm -rf generated dist
  node_modules/.bin/openapi-typescript "$SPEC" --output generated/sigil.d.ts 2>&1 | tee "$ARTIFACTS/typescript-generate.log"
  if grep -qiE 'warn|error' "$ARTIFACTS/typescript-generate.log"; then
    echo "openapi-typescript was not happy with openapi/sigil.json (see above)" >&2
    exit 1
  fi
  node_modules/.bin/tsc -p tsconfig.json
)

sigil_build
trap sigil_stop EXIT
sigil_start "$ARTIFACTS/server.log"
sigil_tenant_create acme
step "operator token"
# The token is the last line of stdout (log lines may share it).
SIGIL_OPERATOR_TOKEN=$("$BIN" operator token --ttl 15m 2>/dev/null | tail -n 1)
[ -n "$SIGIL_OPERATOR_TOKEN" ] || { echo "sigil operator token printed no token" >&2; exit 1; }
export SIGIL_URL SIGIL_TENANT=acme SIGIL_ADMIN_PASSWORD=$ADMIN_PASSWORD SIGIL_OPERATOR_TOKEN

PY_RC=0
TS_RC=0
step "scenario with the Python client"
PYTHONPATH=$PY_DIR/generated "$VENV/bin/python" "$PY_DIR/scenario.py" 2>&1 \
  | tee "$ARTIFACTS/python.log" || PY_RC=$?
step "scenario with the TypeScript client"
(cd "$TS_DIR" && node dist/scenario.js) 2>&1 | tee "$ARTIFACTS/typescript.log" || TS_RC=$?

step "summary"
tail -n 1 "$ARTIFACTS/python.log" "$ARTIFACTS/typescript.log" | grep client: | sed 's/^/  /'
PASSED=$(cat "$ARTIFACTS/python.log" "$ARTIFACTS/typescript.log" | grep -c '^ok ' || true)
FAILED=$(cat "$ARTIFACTS/python.log" "$ARTIFACTS/typescript.log" | grep -c '^FAIL ' || true)
if [ "$PY_RC" -ne 0 ] || [ "$TS_RC" -ne 0 ]; then
  [ "$FAILED" -gt 0 ] || FAILED=1
  echo "server log: $ARTIFACTS/server.log" >&2
fi
echo "clients: $PASSED passed, $FAILED failed"
[ "$PY_RC" -eq 0 ] && [ "$TS_RC" -eq 0 ]
