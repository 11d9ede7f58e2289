#!/usr/bin/env bash
# The multi-arch image: builds linux/amd64 and linux/arm64 from the one
# Dockerfile, pushes both to a local registry started here, assembles one
# tag whose manifest list names both platforms, and checks it: the
# manifest list has both, each image's binary is of its architecture and
# static, and both images (arm64 under qemu through binfmt_misc) give the
# same `check` report on the same file. Needs tests/setup.sh's Docker,
# builder image and binfmt handler; run by tests/run.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$root/tests/docker-setup.sh"
source "$root/tests/arm64-setup.sh"

apt_install docker-registry curl file

registry=127.0.0.1:5055
store=$(mktemp -d)
cat >"$store/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $store/data
http:
  addr: $registry
YAML
docker-registry serve "$store/config.yml" >"$root/target/registry.log" 2>&1 &
registry_pid=$!
cleanup() {
    kill "$registry_pid" 2>/dev/null || true
    rm -rf "$store"
}
trap cleanup EXIT
for _ in $(seq 50); do
    curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "http://$registry/v2/" >/dev/null || { cat "$root/target/registry.log" >&2; echo "multiarch: the registry did not start" >&2; exit 1; }

repo=$registry/random-refresher
# A report's wall-clock times ("seconds", at every level) differ between
# a native run and one under qemu; everything else must be equal.
drop_timings='
import json, sys
def drop(v):
    if isinstance(v, dict):
        return {k: drop(x) for k, x in v.items() if k != "seconds"}
    if isinstance(v, list):
        return [drop(x) for x in v]
    return v
print(json.dumps(drop(json.load(sys.stdin)), sort_keys=True))'
for arch in amd64 arm64; do
    DOCKER_BUILDKIT=1 "$RR_DOCKER_BUILD" build -q --platform "linux/$arch" --build-arg BUILDER_IMAGE="$RR_BUILDER_IMAGE" \
        -t "$repo:test-$arch" "$root" >"$root/target/docker-build-$arch.log" 2>&1 \
        || { cat "$root/target/docker-build-$arch.log" >&2; echo "multiarch: build for $arch failed" >&2; exit 1; }
    docker push -q "$repo:test-$arch" >/dev/null
done
docker manifest rm "$repo:test" >/dev/null 2>&1 || true
docker manifest create --insecure "$repo:test" "$repo:test-amd64" "$repo:test-arm64" >/dev/null
docker manifest push --insecure --purge "$repo:test" >/dev/null

# The tag names both platforms.
platforms=$(docker manifest inspect --insecure "$repo:test" \
    | python3 -c 'import json,sys; m=json.load(sys.stdin); print(" ".join(sorted(p["platform"]["os"]+"/"+p["platform"]["architecture"] for p in m["manifests"])))')
[ "$platforms" = "linux/amd64 linux/arm64" ] || { echo "multiarch: manifest list names '$platforms'" >&2; exit 1; }

# Each platform's image, pulled by the one tag, holds a static binary of its
# architecture and gives the same report on the same file.
input=$(mktemp)
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(15).randbytes(4 + 300 * 2500))' >"$input"
reports=()
for arch in amd64 arm64; do
    docker rmi -f "$repo:test" >/dev/null 2>&1 || true
    docker pull -q --platform "linux/$arch" "$repo:test" >/dev/null
    got=$(docker image inspect -f '{{.Architecture}}' "$repo:test")
    [ "$got" = "$arch" ] || { echo "multiarch: pulled $got for $arch" >&2; exit 1; }
    container=$(docker create --platform "linux/$arch" "$repo:test")
    docker cp -q "$container:/random-refresher" "$store/bin-$arch"
    docker rm "$container" >/dev/null
    want=$([ "$arch" = arm64 ] && echo "ARM aarch64" || echo "x86-64")
    file -b "$store/bin-$arch" | grep -Eq "$want.*(statically|static-pie) linked" \
        || { file "$store/bin-$arch" >&2; echo "multiarch: $arch binary is not static $want" >&2; exit 1; }
    report=$(docker run --rm --platform "linux/$arch" -v "$input:/input.bin:ro" "$repo:test" \
        check --source /input.bin --blocks 300 --format json | python3 -c "$drop_timings")
    echo "$report" | grep -q '"blocks": 300' || { echo "multiarch: $arch check: $report" >&2; exit 1; }
    reports+=("$report")
done
rm -f "$input"
[ "${reports[0]}" = "${reports[1]}" ] || { printf 'multiarch: reports differ:\n%s\n%s\n' "${reports[@]}" >&2; exit 1; }
echo "multiarch: $repo:test names linux/amd64 and linux/arm64; both images ran check with the same report"
