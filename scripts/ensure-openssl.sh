#!/usr/bin/env bash
# Make sure the openssl command is installed: a supplier makes its key and CSR with
# `openssl req` (docs/onboarding.md), and tests/simulator/commands/test_pki_csr.py does too.
# Exit 0 if it is (installing it with apt-get when root on Debian), else say what to install and exit 1.
set -euo pipefail

if command -v openssl >/dev/null 2>&1; then
    exit 0
fi

if [[ "${EUID}" -eq 0 && -f /etc/debian_version ]]; then
    echo "ensure-openssl: installing OpenSSL (Debian package 'openssl')" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq openssl
    if command -v openssl >/dev/null 2>&1; then
        exit 0
    fi
    echo "ensure-openssl: 'apt-get install openssl' ran but openssl is still missing" >&2
    exit 1
fi

{
    echo "ensure-openssl: the CSR tests (tests/simulator/commands/test_pki_csr.py) need the openssl command."
    echo "  Debian/Ubuntu: run 'sudo apt-get install openssl'"
} >&2
exit 1
