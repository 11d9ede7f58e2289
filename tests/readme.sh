#!/usr/bin/env bash
# The shell blocks of the README, docs/ and chart/README.md, as written (see
# tests/readme.py for the markers). The Docker commands need the engine and
# the tests' builder image, tagged with the name the README gives it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${RR_BUILDER_IMAGE:-}" ] || source tests/docker-setup.sh >/dev/null
docker tag "$RR_BUILDER_IMAGE" random-refresher-builder
exec python3 tests/readme.py
