"""Where ActiveMQ and Java are installed, and whether a Docker engine is there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from simulator.vocabulary.errors import BrokerNotInstalledError

__all__ = [
    "DEFAULT_ACTIVEMQ_HOME",
    "HOME_ENV",
    "INSTALL_HINT",
    "docker_available",
    "find_activemq_home",
]

#: Environment variable naming the ActiveMQ installation.
HOME_ENV = "ACTIVEMQ_HOME"
DEFAULT_ACTIVEMQ_HOME = Path("/usr/share/activemq")

INSTALL_HINT = (
    "install it with 'apt-get install activemq' (Debian/Ubuntu, pulls in Java), "
    "or set ACTIVEMQ_HOME to an ActiveMQ Classic 5.x directory, and install a Java 17 runtime"
)


def find_activemq_home() -> Path:
    """The ActiveMQ installation to run: ``$ACTIVEMQ_HOME`` or /usr/share/activemq.

    Raises :class:`BrokerNotInstalledError` if ``bin/activemq.jar`` is missing
    there or ``java`` is not on PATH.
    """
    explicit = os.environ.get(HOME_ENV)
    home = Path(explicit) if explicit else DEFAULT_ACTIVEMQ_HOME
    if not (home / "bin" / "activemq.jar").is_file():
        where = f"ACTIVEMQ_HOME={explicit}" if explicit else str(home)
        raise BrokerNotInstalledError(
            f"ActiveMQ is not installed: no bin/activemq.jar in {where}", hint=INSTALL_HINT
        )
    if shutil.which("java") is None:
        raise BrokerNotInstalledError(
            "java is not on PATH: ActiveMQ needs a Java runtime",
            hint="install a Java 17 runtime (Debian: 'apt-get install openjdk-17-jre-headless')",
        )
    return home


def docker_available() -> bool:
    """True if the docker CLI is on PATH and ``docker info`` succeeds within 5 s."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info"], capture_output=True, timeout=5, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
