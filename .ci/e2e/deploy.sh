#!/usr/bin/env bash
# Deployment files: the compose file against the Compose specification schema, the
# Kubernetes manifests against the Kubernetes API schemas (strict: unknown fields fail).
# `docker compose config` needs the compose plugin, which this machine's registries do not
# ship; kubeconform is not packaged either, so kubernetes-validate (PyPI) stands in for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${SIGIL_CI_CACHE:-$HOME/.cache/sigil-ci}/deploy-venv
if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/check-jsonschema" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'kubernetes-validate==1.34.*' 'check-jsonschema==0.*'
fi
passed=0
failed=0
check() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $*" >&2; fi
}
check "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
for manifest in deploy/k8s/*.yaml; do
  [ "$(basename "$manifest")" = kustomization.yaml ] && continue
  check "$VENV/bin/kubernetes-validate" --strict "$manifest"
done
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
