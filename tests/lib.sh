# Helpers for the install scripts: each step says what it installs, stays
# quiet when it works, and shows the failing command's output when it does
# not. Sourced by tests/setup.sh, tests/chart-setup.sh and
# tests/docker-setup.sh, so that each also runs on its own.

[ -n "${RR_LIB_LOADED:-}" ] && return 0
RR_LIB_LOADED=1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/target/tools"
venv="$root/target/venv"
mkdir -p "$tools"
export DEBIAN_FRONTEND=noninteractive

# step "what" command...: runs the command with its output kept aside;
# on failure prints what failed and that output, and exits.
step() {
    local what=$1
    shift
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        echo "setup: installing $what failed: $*" >&2
        tail -40 "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

apt_updated=""
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: apt-get install ${missing[*]}"
    if [ -z "$apt_updated" ]; then
        step "the Debian package lists" apt-get update -qq
        apt_updated=1
    fi
    step "${missing[*]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A virtual environment under target/ for the PyPI tools: Debian's Python
# refuses global pip installs (PEP 668), and the tests must not change the
# machine's own Python packages.
venv_ready() {
    if [ ! -x "$venv/bin/python" ]; then
        echo "setup: a Python virtual environment in target/venv"
        python3 -m venv "$venv" >/dev/null 2>&1 || {
            apt_install python3-venv
            step "a Python virtual environment" python3 -m venv "$venv"
        }
    fi
    export PATH="$venv/bin:$PATH"
}

# pip_install MODULE_OR_COMMAND PACKAGE: installs PACKAGE into the venv
# unless it is there already.
pip_install() {
    venv_ready
    local check=$1 package=$2
    if [ -x "$venv/bin/$check" ] || "$venv/bin/python" -c "import $check" >/dev/null 2>&1; then
        return 0
    fi
    echo "setup: pip install $package (into target/venv)"
    step "$package" "$venv/bin/pip" install -q --disable-pip-version-check "$package"
}
