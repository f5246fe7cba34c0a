# Shared by scripts/run and scripts/test: a virtualenv in .venv with relentad installed (editable).
# Re-installs only when pyproject.toml changed since the last install.

ensure_venv() {
    local extras="${1:-}"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "relentad needs Python 3.11 or newer (found: $("$python" --version 2>&1))" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        if ! "$python" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "installing python3-venv with apt-get" >&2
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
                "$python" -m venv .venv
            else
                echo "cannot create a virtualenv: install Debian's python3-venv (apt-get install python3-venv)" >&2
                exit 1
            fi
        fi
        .venv/bin/pip install -q --upgrade pip
    fi
    local stamp=".venv/.relentad-installed${extras:+-$extras}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing relentad${extras:+ with [$extras]} into .venv" >&2
        .venv/bin/pip install -q -e ".${extras:+[$extras]}"
        touch "$stamp"
    fi
}
