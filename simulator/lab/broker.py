"""The embedded ActiveMQ broker: its config, its life cycle and how to reach it.

:class:`LocalBroker` runs one private ActiveMQ Classic JVM whose files all
live under one directory (``StateDir.broker``)::

    conf/activemq.xml      generated config: STOMP only, on 127.0.0.1:<port>
    conf/log4j.properties  console logging, so broker.log has everything
    data/                  KahaDB store and the scheduler store
    tmp/                   the JVM's java.io.tmpdir
    broker.log             stdout and stderr of the JVM
    broker.json            pid, port, url, started_at of the running JVM
    last-port              the port of the last start: a start without a port takes it again if free
    start.lock             held by the process starting the broker (one start at a time)

The generated configuration is :mod:`simulator.lab.broker_config`.  A broker
elsewhere is named by a URL (``stomp://host:port``): ``--broker``, or
``$B2BSIM_BROKER``; without either the simulator uses the local broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from simulator.lab.broker_config import LOCAL_HOST, LOG4J_PROPERTIES, NetworkLink, render_config
from simulator.lab.install import INSTALL_HINT, docker_available, find_activemq_home
from simulator.lab.locks import exclusive_lock
from simulator.lab.ports import free_ports
from simulator.lab.procutil import cmdline, die_with_parent, pid_alive
from simulator.vocabulary.broker_url import (
    BROKER_ENV,
    broker_addresses,
    parse_broker_url,
    resolve_broker_url,
    stomp_handshake,
    wait_for_stomp,
)
from simulator.vocabulary.errors import (
    BrokerError,
    BrokerNotInstalledError,
    BrokerUnreachableError,
    PortInUseError,
)

__all__ = [
    "BROKER_ENV",
    "LOCAL_HOST",
    "BrokerInfo",
    "BrokerStatus",
    "LocalBroker",
    "NetworkLink",
    "broker_addresses",
    "docker_available",
    "find_activemq_home",
    "parse_broker_url",
    "render_config",
    "resolve_broker_url",
    "wait_for_stomp",
]

log = logging.getLogger(__name__)

_JVM_HEAP = ("-Xms128M", "-Xmx512M")
_LOG_TAIL_LINES = 20
#: How much longer than its own STOMP timeout a start waits for another start to end.
_LOCK_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class BrokerInfo:
    """A running local broker: where it answers and which JVM it is."""

    url: str
    port: int
    pid: int
    started_at: str
    startup_seconds: float


@dataclass(frozen=True)
class BrokerStatus:
    """What :meth:`LocalBroker.status` found."""

    running: bool
    pid: int | None
    url: str | None
    answering: bool


# --- processes ------------------------------------------------------------------


def _free_port() -> int:
    return free_ports(1, LOCAL_HOST)[0]


def _preferred_port(last: int | None) -> int:
    """``last`` if it is free again (clients that remember it find the broker), else any."""
    if last is not None and 0 < last < 65536:
        try:
            _check_port_free(last)
        except PortInUseError:
            log.info("the broker's last port %d is taken: picking another", last)
        else:
            return last
    return _free_port()


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The JVM binds with SO_REUSEADDR too, so only a live listener counts.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCAL_HOST, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {LOCAL_HOST} is already in use ({exc.strerror})",
                hint="choose another --port, or leave it out to pick a free one",
            ) from None


class LocalBroker:
    """One private ActiveMQ broker whose files live under ``base``.

    ``port=None`` picks a free port on 127.0.0.1.  ``die_with_parent=True``
    makes the JVM die with the process (strictly: the thread) that started it;
    otherwise the JVM runs detached in a session of its own.
    """

    def __init__(
        self,
        base: Path,
        *,
        port: int | None = None,
        home: Path | None = None,
        name: str = "sim",
        die_with_parent: bool = False,
    ) -> None:
        self.base = Path(base).absolute()
        self.port = port
        self.home = home
        self.name = name
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    # --- paths --------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.base / "conf"

    @property
    def config_file(self) -> Path:
        return self.conf_dir / "activemq.xml"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def tmp_dir(self) -> Path:
        return self.base / "tmp"

    @property
    def log_file(self) -> Path:
        return self.base / "broker.log"

    @property
    def info_file(self) -> Path:
        return self.base / "broker.json"

    @property
    def lock_file(self) -> Path:
        return self.base / "start.lock"

    @property
    def last_port_file(self) -> Path:
        return self.base / "last-port"

    def _last_port(self) -> int | None:
        """The port of the last broker of this base: its broker.json, else last-port."""
        info = self.info()
        if info is not None:
            return info.port
        try:
            return int(self.last_port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    # --- state --------------------------------------------------------------------
    def info(self) -> BrokerInfo | None:
        """What broker.json records, or None if there is none (or it is unreadable)."""
        try:
            data = json.loads(self.info_file.read_text())
            return BrokerInfo(
                url=str(data["url"]),
                port=int(data["port"]),
                pid=int(data["pid"]),
                started_at=str(data["started_at"]),
                startup_seconds=float(data["startup_seconds"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _is_our_jvm(self, pid: int) -> bool:
        argv = cmdline(pid)
        if argv is None:
            if self._proc is not None and self._proc.pid == pid:
                self._child_alive(pid)  # collect its exit status
            return False
        return any(p.endswith("activemq.jar") for p in argv) and (
            f"-Dactivemq.base={self.base}" in argv
        )

    def _our_jvms(self) -> list[int]:
        """Pids of every live JVM running a broker of this base."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._is_our_jvm(int(entry.name)):
                pids.append(int(entry.name))
        return pids

    def status(self) -> BrokerStatus:
        """Whether the broker of this base runs, and whether it answers STOMP."""
        if self._proc is not None:
            self._child_alive(self._proc.pid)  # collect its exit status if it ended
        info = self.info()
        if info is None or not self._is_our_jvm(info.pid):
            return BrokerStatus(running=False, pid=None, url=None, answering=False)
        try:
            stomp_handshake(LOCAL_HOST, info.port, 2.0)
        except OSError:
            answering = False
        else:
            answering = True
        return BrokerStatus(running=True, pid=info.pid, url=info.url, answering=answering)

    # --- life cycle ---------------------------------------------------------------
    def start(self, timeout: float = 60) -> BrokerInfo:
        """Start the broker (or return the one already running) once STOMP answers."""
        return self.start_or_reuse(timeout)[0]

    def start_or_reuse(
        self, timeout: float = 60, *, on_wait: Callable[[], None] | None = None
    ) -> tuple[BrokerInfo, bool]:
        """Like :meth:`start`, and whether this call started the JVM (False: it ran already).

        Starts of one base take turns (a lock on ``start.lock``), so a start
        never takes another's new JVM for a stale one: a start that finds the
        lock held calls ``on_wait`` once, waits for the other start to end
        (at most ``timeout`` + 30 s), then reuses its broker if it answers.
        """
        with contextlib.ExitStack() as held:
            wait = timeout + _LOCK_MARGIN_SECONDS
            try:
                held.enter_context(exclusive_lock(self.lock_file, timeout=wait, on_wait=on_wait))
            except TimeoutError:
                raise BrokerError(
                    f"another start of the broker in {self.base} has gone on for over {wait:g} s",
                    hint="wait for it to end (or end it), then start again",
                ) from None
            current = self.info()
            if current is not None and self.status().answering:
                log.debug("broker already running: %s (pid %d)", current.url, current.pid)
                return current, False
            return self._start_new(timeout), True

    def _start_new(self, timeout: float) -> BrokerInfo:
        """Start a JVM for this base (the caller holds the start lock)."""
        before = self._last_port()
        self._clean_up_stale()
        home = self.home or find_activemq_home()
        if self.port is not None:
            _check_port_free(self.port)
        port = self.port if self.port is not None else _preferred_port(before)
        self._write_config(port)
        begun = time.monotonic()
        pid = self._launch(home)
        url = f"stomp://{LOCAL_HOST}:{port}"
        try:
            wait_for_stomp(LOCAL_HOST, port, timeout, alive=lambda: self._child_alive(pid))
        except BrokerUnreachableError:
            self._kill(pid, grace=2)
            raise BrokerError(
                f"the ActiveMQ broker did not answer STOMP at {url} within {timeout:g} s; "
                f"last lines of {self.log_file}:\n{self._log_tail()}",
                hint="read broker.log; a taken port or a locked data directory are common causes",
            ) from None
        info = BrokerInfo(
            url=url,
            port=port,
            pid=pid,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            startup_seconds=round(time.monotonic() - begun, 2),
        )
        self.info_file.write_text(json.dumps(asdict(info), indent=2) + "\n")
        self.last_port_file.write_text(f"{port}\n")
        log.info("broker started: %s (pid %d)", url, pid)
        return info

    def stop(self, grace: float = 15) -> bool:
        """Stop the broker: SIGTERM, SIGKILL after ``grace`` s.  True if one was running."""
        if self._proc is not None:  # reap our own child if it already died
            self._child_alive(self._proc.pid)
        pids = set(self._our_jvms())
        info = self.info()
        if info is not None and self._is_our_jvm(info.pid):
            pids.add(info.pid)
        for pid in pids:
            self._kill(pid, grace=grace)
        self.info_file.unlink(missing_ok=True)
        return bool(pids)

    def __enter__(self) -> BrokerInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- helpers ------------------------------------------------------------------
    def _clean_up_stale(self) -> None:
        """Kill JVMs of this base left by an earlier run and forget their broker.json."""
        for pid in self._our_jvms():
            log.warning("stopping a stale broker JVM of %s (pid %d)", self.base, pid)
            self._kill(pid, grace=5)
        self.info_file.unlink(missing_ok=True)

    def _write_config(self, port: int) -> None:
        for folder in (self.base, self.conf_dir, self.data_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_file.write_text(render_config(port, name=self.name))
        (self.conf_dir / "log4j.properties").write_text(LOG4J_PROPERTIES)

    def _launch(self, home: Path) -> int:
        """Start the JVM writing to broker.log; its pid."""
        command = [
            "java",
            *_JVM_HEAP,
            "-XX:+UseSerialGC",
            f"-Dactivemq.home={home}",
            f"-Dactivemq.base={self.base}",
            f"-Dactivemq.conf={self.conf_dir}",
            f"-Dactivemq.data={self.data_dir}",
            f"-Djava.io.tmpdir={self.tmp_dir}",
            f"-Dlog4j.configuration=file:{self.conf_dir / 'log4j.properties'}",
            "-jar",
            str(home / "bin" / "activemq.jar"),
            "start",
            f"xbean:file:{self.config_file}",
        ]
        with self.log_file.open("ab") as out:
            try:
                if self.die_with_parent:
                    self._proc = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=self.base,
                        start_new_session=True,
                        preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl in child
                    )
                    return self._proc.pid
                # Detached: no Popen object, which would warn when dropped while the JVM runs.
                return os.posix_spawnp(
                    command[0],
                    command,
                    dict(os.environ),
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                        (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
                    ],
                    setsid=True,
                )
            except OSError as exc:
                raise BrokerNotInstalledError(
                    f"cannot run java: {exc.strerror}", hint=INSTALL_HINT
                ) from None

    def _child_alive(self, pid: int) -> bool:
        """Whether the JVM ``pid`` still runs, reaping it if it is our child and exited.

        For our own child the exit status is the truth: a JVM whose main thread
        ended shows as a zombie in /proc while its other threads still shut down.
        """
        if self._proc is not None and self._proc.pid == pid:
            if self._proc.poll() is None:
                return True
            self._proc = None
            return False
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: ask /proc
            return pid_alive(pid)
        return done == 0

    def _kill(self, pid: int, *, grace: float) -> None:
        """SIGTERM the JVM, SIGKILL it after ``grace`` s, and wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, grace):
            log.warning("broker JVM %d ignored SIGTERM for %g s: killing it", pid, grace)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 10):
                raise BrokerError(f"broker JVM {pid} survived SIGKILL", hint="kill it by hand")

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not self._child_alive(pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no broker.log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(broker.log is empty)"
