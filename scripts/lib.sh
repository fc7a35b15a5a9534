# Shared helpers for scripts/*. Source it; do not run it.
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG...: installs the Debian packages that are missing (needs root).
ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    # Debian's postinst tries to start the daemons; scripts/services starts them on loopback instead.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ensure_python_packages PKG...: installs the PyPI packages that are missing (test peers
# independent of SwiftESB: pika as an AMQP client).
ensure_python_packages() {
    local missing=()
    for package in "$@"; do
        python3 -c "import $package" 2>/dev/null || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} from PyPI"
    # Debian's own python3 refuses pip installs outside a venv (PEP 668); a pyenv one does not.
    python3 -m pip install -q --root-user-action=ignore "${missing[@]}" 2>/dev/null \
        || python3 -m pip install -q --root-user-action=ignore --break-system-packages "${missing[@]}" || true
    for package in "${missing[@]}"; do python3 -c "import $package" || die "cannot install $package"; done
}

BUILD_PACKAGES=(pkg-config libhiredis-dev librabbitmq-dev libsqlite3-dev sqlite3)
# curl and openssl: the security tests (R20) speak to the listener as a browser or partner would.
# postgresql: the cluster's ODB (scripts/services starts its own on loopback; the Debian cluster is not used).
SERVICE_PACKAGES=(redis-server redis-tools rabbitmq-server postgresql haproxy curl openssl)
# The dashboard is tested in a real headless Chromium driven by selenium.
BROWSER_PACKAGES=(chromium chromium-driver fonts-liberation)
PYTHON_PACKAGES=(pika django selenium schemathesis)
