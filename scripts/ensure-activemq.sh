#!/usr/bin/env bash
# Make sure ActiveMQ Classic and a Java runtime are installed for the embedded broker.
# Exit 0 if they are (installing them with apt-get when root on Debian), else say what to install and exit 1.
set -euo pipefail

have_activemq() {
    if [[ -n "${ACTIVEMQ_HOME:-}" && -f "${ACTIVEMQ_HOME}/bin/activemq.jar" ]]; then
        return 0
    fi
    [[ -f /usr/share/activemq/bin/activemq.jar ]]
}

if [[ -n "${ACTIVEMQ_HOME:-}" && ! -f "${ACTIVEMQ_HOME}/bin/activemq.jar" ]]; then
    echo "ensure-activemq: warning: ACTIVEMQ_HOME=${ACTIVEMQ_HOME} has no bin/activemq.jar;" \
        "b2bsim will refuse it: unset it to use /usr/share/activemq" >&2
fi

have_java() {
    command -v java >/dev/null 2>&1
}

if have_activemq && have_java; then
    exit 0
fi

if [[ "${EUID}" -eq 0 && -f /etc/debian_version ]]; then
    echo "ensure-activemq: installing ActiveMQ (Debian package 'activemq', pulls in Java)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq activemq
    if have_activemq && have_java; then
        exit 0
    fi
    echo "ensure-activemq: 'apt-get install activemq' ran but bin/activemq.jar or java is still missing" >&2
    exit 1
fi

{
    echo "ensure-activemq: the embedded broker needs ActiveMQ Classic 5.x and a Java 17 runtime."
    have_activemq || echo "  missing ActiveMQ: run 'sudo apt-get install activemq' (Debian/Ubuntu)," \
        "or unpack ActiveMQ Classic 5.x and set ACTIVEMQ_HOME to its directory"
    have_java || echo "  missing java: install a Java 17 runtime (Debian: 'sudo apt-get install openjdk-17-jre-headless')"
    echo "  or point the simulator at a running broker: export B2BSIM_BROKER=stomp://HOST:61613"
} >&2
exit 1
