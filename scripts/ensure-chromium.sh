#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the live view's browser tests (tests/ui/).
# Playwright drives /usr/bin/chromium; its own browser download cannot work here.
# Exit 0 if it is (installing it with apt-get when root on Debian), else say what to install and exit 1.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "${CHROMIUM}" ]]; then
    exit 0
fi

if [[ "${EUID}" -eq 0 && -f /etc/debian_version ]]; then
    echo "ensure-chromium: installing Chromium (Debian package 'chromium')" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium
    if [[ -x "${CHROMIUM}" ]]; then
        exit 0
    fi
    echo "ensure-chromium: 'apt-get install chromium' ran but ${CHROMIUM} is still missing" >&2
    exit 1
fi

{
    echo "ensure-chromium: the browser tests (tests/ui/) need Chromium at ${CHROMIUM}."
    echo "  Debian/Ubuntu: run 'sudo apt-get install chromium'"
} >&2
exit 1
