"""The soak's chain: the broker, KA, the ICC workers and the stub, behind fault proxies.

Every component is its own process, started as an operator would
(``b2bsim serve producer|icc|supplier-stub``; the broker's JVM from this
process), and every link the soak strikes goes through a
:class:`~simulator.lab.fault_proxy.FaultProxy` on loopback:

- the components reach the broker at ``stomp://127.0.0.1:P`` where a proxy
  forwards to the broker's own port;
- the registry names each supplier ``https://127.0.0.1:PORT/...``: a proxy
  listens there and forwards to the stub, which listens on the same port of
  ``127.0.0.2`` (another loopback address), so the URL the envelope names,
  the certificate's host and the stub's own registry all still agree.

A watchdog restarts a component that died without a fault saying so, and
counts it: an unexpected exit is a finding of the soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.lab.broker import BrokerInfo, LocalBroker
from simulator.lab.components import Component
from simulator.lab.fault_proxy import FaultProxy
from simulator.lab.network import kill_jvm
from simulator.lab.ports import free_ports
from simulator.vocabulary.errors import B2BSimError, BrokerError
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.state import StateDir

__all__ = ["STUB_HOST", "ChainOptions", "SoakChain"]

log = logging.getLogger(__name__)
Say = Callable[[str], None]

#: The stub listens here; the proxies listen on 127.0.0.1 at the registry's ports.
STUB_HOST = "127.0.0.2"
#: Seconds a component may take to say it is ready.
READY_TIMEOUT = 90.0
#: Seconds between two tries to start a component that refused to.
RESTART_PAUSE_S = 2.0
#: Seconds a fault keeps trying to start again what it stopped.
RESTART_WITHIN_S = 60.0


@dataclass
class ChainOptions:
    state: StateDir  # the run's own (its PKI is RUN_DIR/pki)
    run_dir: Path
    queue: str
    seed: int
    rate: float
    workers: int
    request_timeout: float
    gap_timeout: float


@dataclass
class Supervised:
    """A component process the soak keeps running, unless a fault holds it down."""

    name: str
    component: Component | None = None
    held: bool = False  # a fault has it down or frozen on purpose
    frozen: bool = False
    needs_start: bool = False  # a fault's restart failed: the watchdog tries again
    restarts: int = 0
    exits: list[dict[str, Any]] = field(default_factory=list)  # unexpected ones

    @property
    def pid(self) -> int | None:
        c = self.component
        return c.proc.pid if c is not None and c.running else None


class SoakChain:
    """Starts, strikes, restarts and stops the soak's processes and proxies."""

    def __init__(self, options: ChainOptions, say: Say) -> None:
        self.o, self.say = options, say
        self.broker = LocalBroker(options.run_dir / "broker", die_with_parent=True)
        # The JVM dies with the thread that forks it (PR_SET_PDEATHSIG): one long-lived
        # thread starts every broker JVM, so the event loop (and the proxies) never wait.
        self._broker_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker")
        self.broker_info: BrokerInfo | None = None
        self.broker_frozen = False
        self.broker_proxy: FaultProxy | None = None
        self.stub_proxies: list[FaultProxy] = []
        self.stub = Supervised("supplier-stub")
        self.ka = Supervised("ka")
        self.workers = [Supervised(f"icc-{i + 1}") for i in range(options.workers)]
        self.ka_starts = 0
        self._watch: asyncio.Task[None] | None = None

    # --- files ---------------------------------------------------------------------
    @property
    def registry_file(self) -> Path:
        return self.o.run_dir / "registry.json"

    @property
    def faults_file(self) -> Path:
        return self.o.run_dir / "faults.json"

    @property
    def icc_faults_file(self) -> Path:
        return self.o.run_dir / "icc-faults.json"

    @property
    def db(self) -> Path:
        return self.o.run_dir / "supplier-stub.sqlite"

    @property
    def produced_log(self) -> Path:
        return self.o.run_dir / "produced.jsonl"

    def events_files(self) -> list[Path]:
        return sorted(self.o.run_dir.glob("icc-*.jsonl"))

    @property
    def broker_url(self) -> str:
        """The broker's own URL (for browsing it at the end), not the proxy's."""
        assert self.broker_info is not None
        return self.broker_info.url

    @property
    def proxied_broker_url(self) -> str:
        assert self.broker_proxy is not None
        return f"stomp://127.0.0.1:{self.broker_proxy.port}"

    def supervised(self) -> list[Supervised]:
        return [self.stub, *self.workers, self.ka]

    def worker(self, target: str) -> Supervised:
        return next(w for w in self.workers if w.name == target)

    # --- start and stop ------------------------------------------------------------------
    async def start_broker(self) -> BrokerInfo:
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(self._broker_thread, self.broker.start)
        self.broker_info = info
        if self.broker_proxy is None:
            (port,) = free_ports(1)
            self.broker_proxy = await FaultProxy(
                ("127.0.0.1", info.port), listen_port=port, name="broker-link"
            ).start()
        else:
            self.broker_proxy.retarget(("127.0.0.1", info.port))
        return info

    async def start(self) -> None:
        info = await self.start_broker()
        self.say(f"broker started: {info.url} in {info.startup_seconds:.1f} s")
        for entry in Registry.load(self.registry_file):
            port = urlsplit(entry.url).port
            assert port is not None
            proxy = FaultProxy((STUB_HOST, port), listen_port=port, name=f"link-stub:{port}")
            self.stub_proxies.append(await proxy.start())
        await self.start_stub()
        for w in self.workers:
            await self.start_worker(w)
        self.say(f"supplier stub and {len(self.workers)} ICC worker(s) ready, behind proxies")
        await self.start_ka()
        self.say(f"KA producing at {self.o.rate:g} msg/s")
        self._watch = asyncio.create_task(self._watchdog())

    async def start_stub(self) -> None:
        o = self.o
        args = ["--registry", str(self.registry_file), "--db", str(self.db)]
        args += ["--faults", str(self.faults_file), "--gap-timeout", str(o.gap_timeout)]
        args += ["--bind", STUB_HOST]
        self.stub.component = await Component.start(
            "supplier-stub",
            o.state.root,
            args,
            o.run_dir / "supplier-stub.log",
            timeout=READY_TIMEOUT,
        )

    async def start_worker(self, w: Supervised, env: Mapping[str, str] | None = None) -> None:
        o = self.o
        options: dict[str, object] = {
            "--broker": self.proxied_broker_url,
            "--queue": o.queue,
            "--registry": self.registry_file,
            "--events": o.run_dir / f"{w.name}.jsonl",
            "--request-timeout": o.request_timeout,
            "--outbox": o.run_dir / "icc-outbox.sqlite",
            "--faults": self.icc_faults_file,
        }
        args = [str(part) for pair in options.items() for part in pair]
        w.component = await Component.start(
            "icc", o.state.root, args, o.run_dir / f"{w.name}.log", timeout=READY_TIMEOUT, env=env
        )

    async def start_ka(self) -> None:
        """KA as its own process; each start draws new documents (seed, start number)."""
        o = self.o
        self.ka_starts += 1
        args = ["--broker", self.proxied_broker_url, "--queue", o.queue]
        args += ["--registry", str(self.registry_file), "--chains", "0", "--rate", f"{o.rate:g}"]
        args += ["--seed", str(o.seed * 1000 + self.ka_starts), "--log", str(self.produced_log)]
        self.ka.component = await Component.start(
            "producer", o.state.root, args, o.run_dir / "ka.log", timeout=READY_TIMEOUT
        )

    async def restart(self, s: Supervised, env: Mapping[str, str] | None = None) -> None:
        if s is self.stub:
            await self.start_stub()
        elif s is self.ka:
            await self.start_ka()
        else:
            await self.start_worker(s, env)
        s.restarts += 1

    async def stop_ka(self) -> None:
        self.ka.held = True
        self.thaw(self.ka)
        if self.ka.component is not None:
            await self.ka.component.stop(grace=30)

    async def stop(self) -> None:
        """Stop every process and proxy this chain started, the broker last."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for s in self.supervised():
            s.held = True
            self.thaw(s)
            if s.component is not None:
                await s.component.stop()
        for proxy in [*self.stub_proxies, *([self.broker_proxy] if self.broker_proxy else [])]:
            await proxy.stop()
        self.thaw_broker()

    def stop_broker(self) -> None:
        self.thaw_broker()
        with contextlib.suppress(B2BSimError):
            self._broker_thread.submit(self.broker.stop).result(60)
        self._broker_thread.shutdown(wait=True)

    # --- faults on processes -------------------------------------------------------------
    def freeze(self, s: Supervised) -> None:
        if (pid := s.pid) is not None:
            os.kill(pid, signal.SIGSTOP)
            s.frozen = True

    def thaw(self, s: Supervised) -> None:
        if s.frozen and (pid := s.pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        s.frozen = False

    async def kill(self, s: Supervised) -> None:
        self.thaw(s)
        if s.component is not None:
            await s.component.kill()

    async def halt(self, s: Supervised) -> None:
        """SIGTERM (an orderly stop), as an operator stops a component."""
        self.thaw(s)
        if s.component is not None:
            await s.component.stop()

    def _broker_pid(self) -> int:
        info = self.broker.info()
        if info is None:
            raise BrokerError(
                "the soak's broker is not running", hint=f"read {self.broker.log_file}"
            )
        return info.pid

    def freeze_broker(self) -> None:
        os.kill(self._broker_pid(), signal.SIGSTOP)
        self.broker_frozen = True

    def thaw_broker(self) -> None:
        if self.broker_frozen:
            info = self.broker.info()
            if info is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGCONT)
        self.broker_frozen = False

    async def kill_broker(self) -> None:
        self.thaw_broker()
        await asyncio.to_thread(kill_jvm, self.broker)
        port = self.broker_info.port if self.broker_info else None
        self.broker = LocalBroker(self.o.run_dir / "broker", port=port, die_with_parent=True)

    async def restart_broker(self) -> BrokerInfo:
        """Start the killed broker on its port; if that is taken, on another (the proxy
        follows it there)."""
        try:
            return await self.start_broker()
        except BrokerError as exc:
            log.warning("broker did not come back on its port (%s); trying another", exc)
            self.broker = LocalBroker(self.o.run_dir / "broker", die_with_parent=True)
            return await self.start_broker()

    # --- the watchdog --------------------------------------------------------------------
    async def _watchdog(self) -> None:
        """Restart a component that exited while no fault held it (bounded: once a second
        at most, for the soak's life)."""
        while True:
            await asyncio.sleep(1.0)
            for s in self.supervised():
                c = s.component
                if s.held or (c is not None and c.running):
                    continue
                if c is not None and not s.needs_start:
                    code = c.proc.returncode
                    s.exits.append({"at": round(time.time(), 3), "code": code, "log": str(c.log)})
                    self.say(f"{s.name} exited by itself (code {code}); restarting it")
                await self.try_restart(s)

    async def try_restart(
        self, s: Supervised, env: Mapping[str, str] | None = None, *, within: float = 0.0
    ) -> bool:
        """Start ``s`` again, trying for ``within`` s (a component refuses to start while
        its broker link is down); on failure leave it to the watchdog (True: it runs)."""
        deadline = time.monotonic() + within
        while True:
            try:
                await self.restart(s, env)
            except B2BSimError as exc:
                s.needs_start = True
                self.say(f"{s.name} did not come back yet: {exc.one_line().splitlines()[0]}")
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(RESTART_PAUSE_S)
                continue
            s.needs_start = False
            return True
