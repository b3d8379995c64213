#!/usr/bin/env bash
# Unpack Debian's Exim into a private directory for tests/e2e/exim_e2e.py.
#
# Exim and Postfix conflict as Debian packages, and the other end-to-end tests
# need Postfix installed, so Exim is not installed with dpkg. This script
# fetches the .deb files with `apt-get download` and unpacks them with
# `dpkg -x` under one directory (default /opt/notify-test-exim). Nothing runs
# from the packages' maintainer scripts: no /etc/exim4, no service, no cron
# job. The test runs the binary as root with its own configuration
# (`exim4 -C FILE`), spool and log directories.
#
# Debian builds Exim with the user name Debian-exim compiled in, and the
# binary stops at start-up when that user does not exist, whatever the
# configuration sets. So this script creates the system user and group
# Debian-exim when missing, as the exim4-base package would, with no home
# directory and no login shell.
#
# The shared libraries that the Exim binary links (libidn12, libgnutls30 and
# so on, read from the package's Depends field) do not conflict with Postfix,
# so those are installed with apt-get when missing.
#
# Idempotent: when the binary is already unpacked and runs, nothing happens.
# Delete the directory to fetch again. Needs root and a working apt source.
#
# Usage: scripts/install-exim-for-tests.sh [DIRECTORY]
#        (or NOTIFY_TEST_EXIM_DIR=DIRECTORY)

set -euo pipefail

target=${1:-${NOTIFY_TEST_EXIM_DIR:-/opt/notify-test-exim}}
binary="$target/usr/sbin/exim4"
# The binary starts with an empty configuration (-C /dev/null, all defaults)
# when its libraries and the Debian-exim user are present. Without -C it
# would look for /etc/exim4, which is not installed.
runs() {
    "$binary" -C /dev/null -bV >/dev/null 2>&1
}
# exim4-daemon-light contains the binary; exim4-base the helper programs
# (exim_tidydb, exiqgrep); exim4-config the Debian split configuration that
# contrib/exim/README.md refers to, and update-exim4.conf.
packages=(exim4-daemon-light exim4-base exim4-config)

exim_user=Debian-exim

if [[ -x "$binary" ]] && id "$exim_user" >/dev/null 2>&1 && runs; then
    echo "install-exim-for-tests: $binary present"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-exim-for-tests: $binary is missing; run this script as root to unpack Exim into $target" >&2
    exit 1
fi

download=$(mktemp -d)
remove_download() {
    rm -rf "$download"
}
trap remove_download EXIT
# apt-get download drops privileges to _apt when it can, which then needs
# write access to the download directory.
chmod 0755 "$download"
if id _apt >/dev/null 2>&1; then
    chown _apt "$download"
fi

cd "$download"
if ! apt-get -q download "${packages[@]}"; then
    echo "install-exim-for-tests: apt-get download failed; running apt-get update once and retrying" >&2
    apt-get -o DPkg::Lock::Timeout=300 update -q
    apt-get -q download "${packages[@]}"
fi

# The shared libraries come from the Depends field of the daemon package:
# every lib* package there that is not installed yet.
daemon_deb=$(ls exim4-daemon-light_*.deb)
missing=()
for dependency in $(dpkg-deb -f "$daemon_deb" Depends | tr ',' '\n' | sed -e 's/(.*)//' -e 's/|.*//' -e 's/ //g'); do
    if [[ "$dependency" != lib* ]]; then
        continue
    fi
    status=$(dpkg-query -W -f='${db:Status-Status}' "$dependency" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$dependency")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "install-exim-for-tests: installing shared libraries ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
fi

if ! id "$exim_user" >/dev/null 2>&1; then
    echo "install-exim-for-tests: creating the system user $exim_user"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$exim_user"
fi

mkdir -p "$target"
for deb in ./*.deb; do
    dpkg -x "$deb" "$target"
done

if ! runs; then
    echo "install-exim-for-tests: $binary was unpacked but does not run:" >&2
    "$binary" -C /dev/null -bV >&2 || true
    exit 1
fi
echo "install-exim-for-tests: Exim unpacked into $target ($("$binary" -C /dev/null -bV 2>/dev/null | grep -m 1 'Exim version'))"
