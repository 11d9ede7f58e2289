#!/usr/bin/env bash
# Runs the README's shell blocks that are marked `<!-- tested -->`, line by
# line, from the repository root, as a new user would paste them. A line
# that fails is run once more before the block counts as failed: a health
# check fails one good block in 1,250 by chance.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0
failed=0
mapfile -t lines < <(awk '
    /<!-- tested -->/ { armed = 1; next }
    armed && /^```sh/ { inside = 1; next }
    inside && /^```/ { inside = 0; armed = 0; next }
    inside { print }
' README.md)
[ ${#lines[@]} -gt 0 ] || { echo "readme: no tested block found" >&2; exit 1; }
for line in "${lines[@]}"; do
    [ -z "${line// }" ] && continue
    case "$line" in \#*) continue ;; esac
    if bash -c "$line" >/dev/null 2>"target/readme-last.err" || bash -c "$line" >/dev/null 2>"target/readme-last.err"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "readme: failed: $line" >&2
        tail -5 target/readme-last.err >&2
    fi
done
echo "readme: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
