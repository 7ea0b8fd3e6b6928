#!/usr/bin/env bash
# Schema fuzzing: schemathesis generates requests from the committed spec
# (openapi/sigil.json) and sends them to a live server, checking every answer:
#   - no 5xx (not_a_server_error),
#   - the status code is documented for the operation (status_code_conformance),
#   - the content type is the documented one (content_type_conformance),
#   - documented response headers are there (response_headers_conformance),
#   - the body matches the documented schema (response_schema_conformance),
#   - data that breaks the schema is refused with a 4xx (negative_data_rejection).
#
# Every operation is fuzzed, in three passes on one server (tenant `acme`):
#   1. admin:    all tenant operations, as the tenant admin (confirmed login session,
#                renewed by tests/schemathesis/hooks.py when it expires or is revoked);
#   2. auth:     login, confirmPassword, changePassword, as the admin. They run after the
#                rest because their wrong passwords trip the login throttle for the admin
#                and this address (as they should), after which no new session could be
#                made for pass 1;
#   3. operator: the operator's operations (tenants, global plugins) with an operator
#                token, last because they may disable the tenant the other passes use.
# Before pass 2 the tenant's policy is put back to its defaults, which pass 1 fuzzed.
# Before passes 1 and 3, tests/schemathesis/seed.py creates a few objects (tokens, scope
# sets, users, a plugin; a second tenant) whose ids the hooks put into path parameters
# part of the time, so that the operations on one object meet objects that exist.
#
# Reports (JUnit) and the server log land in tests/artifacts/schemathesis/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source .ci/e2e/lib/sigil.sh

SCHEMATHESIS_VERSION=4.32.5
SEED=${SCHEMATHESIS_SEED:-20251123}
# Every check but positive_data_acceptance, which still finds refusals that depend on
# stored state, the caller or the clock (unknown methods or sets, an expiry in the past, a
# password containing the username, ...), none expressible in OpenAPI 3.0. Run it with
# SCHEMATHESIS_CHECKS=all to see them.
CHECKS=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability,ignored_auth,object_level_authorization}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
ARTIFACTS=$ROOT/tests/artifacts/schemathesis
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sigil-ci
VENV=$CACHE/schemathesis-$SCHEMATHESIS_VERSION

step "schemathesis $SCHEMATHESIS_VERSION (venv in $VENV)"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$VENV/bin/schemathesis" --version

sigil_build
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
trap sigil_stop EXIT
sigil_start "$ARTIFACTS/server.log"
sigil_tenant_create acme
OPERATOR_TOKEN=$("$BIN" operator token 2>/dev/null | tail -n 1)
[ -n "$OPERATOR_TOKEN" ] || { echo "no operator token" >&2; exit 1; }

# py SCRIPT ARGS: runs Python with tests/schemathesis on the path and the server's
# coordinates in the environment (see hooks.py).
py() {
  SIGIL_URL=$SIGIL_URL SIGIL_TENANT=acme SIGIL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
    SIGIL_OPERATOR_TOKEN=$OPERATOR_TOKEN PYTHONPATH=$ROOT/tests/schemathesis \
    "$VENV/bin/python" "$@"
}

DEFAULT_POLICY=$(py -c 'import json; from hooks import admin_session, call
print(json.dumps(call("GET", "/api/v1/tenant", token=admin_session())["policy"]))')

PASSES=()
RESULTS=()
FAILED=0
FAILED_PASSES=0

# fuzz NAME AS [schemathesis options...]: one pass; its summary is kept for the end.
fuzz() {
  local name=$1 as=$2
  shift 2
  step "schemathesis pass: $name (as $as)"
  local rc=0
  # From the artifacts folder: schemathesis and hypothesis keep caches in the working
  # directory, which must not land in the repository.
  (cd "$ARTIFACTS" && SIGIL_URL=$SIGIL_URL SIGIL_TENANT=acme SIGIL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
    SIGIL_FUZZ_AS=$as SIGIL_OPERATOR_TOKEN=$OPERATOR_TOKEN SIGIL_FUZZ_IDS=${FUZZ_IDS:-} \
    PYTHONPATH=$ROOT/tests/schemathesis SCHEMATHESIS_HOOKS=hooks \
    "$VENV/bin/schemathesis" run "$ROOT/openapi/sigil.json" \
    --url "$SIGIL_URL" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --generation-with-security-parameters false \
    --generation-database none \
    --request-timeout 30 \
    --no-color \
    --report junit --report-junit-path "$ARTIFACTS/$name.junit.xml" \
    "$@") 2>&1 | tee "$ARTIFACTS/$name.log" || rc=$?
  PASSES+=("$name")
  RESULTS+=("$(grep -E '^=+ .* in [0-9.]+s =+$' "$ARTIFACTS/$name.log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')")
  if [ "$rc" -ne 0 ]; then
    FAILED=1
    FAILED_PASSES=$((FAILED_PASSES + 1))
  fi
}

OPERATOR_OPS=(createTenant listTenants getTenant updateTenant disableTenant)
OPERATOR_REGISTRY_OPS=(listPlugins registerPlugin getPlugin deletePlugin listMethods)
AUTH_OPS=(login confirmPassword changePassword)

exclude=()
for op in "${OPERATOR_OPS[@]}" "${AUTH_OPS[@]}"; do exclude+=(--exclude-operation-id "$op"); done
FUZZ_IDS=$(py "$ROOT/tests/schemathesis/seed.py" admin)
fuzz admin admin "${exclude[@]}"

py -c 'import json, sys; from hooks import admin_session, call
call("PUT", "/api/v1/tenant/policy", json.loads(sys.argv[1]), admin_session())' "$DEFAULT_POLICY"
include=()
for op in "${AUTH_OPS[@]}"; do include+=(--include-operation-id "$op"); done
FUZZ_IDS=
fuzz auth admin "${include[@]}"

include=()
for op in "${OPERATOR_OPS[@]}" "${OPERATOR_REGISTRY_OPS[@]}"; do include+=(--include-operation-id "$op"); done
FUZZ_IDS=$(py "$ROOT/tests/schemathesis/seed.py" operator)
fuzz operator operator "${include[@]}"

step "summary"
for i in "${!PASSES[@]}"; do
  printf '  %-9s %s\n' "${PASSES[$i]}" "${RESULTS[$i]:-no result}"
done
echo "  logs and JUnit reports: $ARTIFACTS"
if [ "$FAILED" -ne 0 ]; then
  echo "schemathesis found failures (details above and in $ARTIFACTS/*.log)" >&2
fi
echo "schemathesis: $((${#PASSES[@]} - FAILED_PASSES)) passed, $FAILED_PASSES failed"
[ "$FAILED" -eq 0 ]
