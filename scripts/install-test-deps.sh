#!/usr/bin/env bash
# Install the Debian packages that the tests need: Postfix (the real MTA that
# tests/e2e runs the contrib/postfix configuration with), procmail (the
# mailbox_command of the local(8) test), dovecot-core (its
# dovecot-lda is the delivery program of the --exec test), nginx (for the
# contrib/nginx configuration in tests/nginx), Chromium with its WebDriver and
# Debian's Selenium (for tests/browser), systemd's tools and strace (for
# tests/systemd), curl, Python 3 and make.
#
# Idempotent and noninteractive: packages already installed are skipped, and
# apt-get runs only when something is missing. Postfix is preseeded with
# "No configuration", so the package neither prompts nor writes a
# main.cf that would start a mail server on port 25; the tests write their own
# configuration in a temporary directory.
#
# While installing, a temporary policy-rc.d stops the package scripts from
# starting Postfix, Dovecot or nginx as a system service. It is created only when none exists
# and removed on exit.
#
# Exim conflicts with Postfix as a package, so it is not installed here:
# scripts/install-exim-for-tests.sh unpacks it beside Postfix, and this script
# runs it last.
#
# Needs root (CI runs as root). Usage: scripts/install-test-deps.sh

set -euo pipefail

packages=(postfix procmail dovecot-core nginx chromium chromium-driver python3-selenium systemd strace util-linux man-db groff-base curl python3 make)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$package")
    fi
done

install_exim() {
    "$(dirname "$0")/install-exim-for-tests.sh"
}

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-test-deps: all packages present: ${packages[*]}"
    install_exim
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-test-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Preseed the answers to the Postfix installer's debconf questions.
debconf-set-selections <<'SELECTIONS'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string localhost.localdomain
SELECTIONS

policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# Temporary: keep package scripts from starting services.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
fi
remove_policy() {
    if [[ $created_policy -eq 1 ]]; then
        rm -f "$policy"
    fi
}
trap remove_policy EXIT

apt-get -o DPkg::Lock::Timeout=300 update -q
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
install_exim

echo "install-test-deps: done"
