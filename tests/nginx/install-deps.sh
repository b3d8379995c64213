#!/bin/sh
# Install nginx from Debian's packages for tests/nginx/nginx_test.py.
#
# Idempotent and noninteractive: it does nothing when an nginx binary is
# already there. The test starts its own nginx process, so this script keeps
# the package's service from starting: when no /usr/sbin/policy-rc.d exists,
# it puts one there that denies every service start for the length of the
# install, then removes it. An existing policy-rc.d is left as it is.
# Needs root, because apt-get does.
set -eu

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    echo "install-deps: nginx already installed: $(/usr/sbin/nginx -v 2>&1 || nginx -v 2>&1)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: apt-get needs root: run this script as root" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Temporary, from tests/nginx/install-deps.sh: no service starts.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
# Another apt-get may be running (a second test script): wait for its lock.
apt_options="-o DPkg::Lock::Timeout=300 -q -y"
apt-get $apt_options update
apt-get $apt_options install --no-install-recommends nginx

echo "install-deps: installed $(/usr/sbin/nginx -v 2>&1)"
