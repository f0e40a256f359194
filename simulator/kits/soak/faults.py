"""Applying each fault kind of the soak's schedule to the running chain.

One coroutine per lane plays that lane's faults in order: start the fault,
log it (``faults.jsonl``: one JSON line ``{"at_ms", "kind", "target",
"params"}`` per fault injected), hold it for its seconds, end it.  How each
kind is made is listed in docs/reliability.md; in short:

- ``kill-*``: kill -9, down for the fault's seconds, started again;
- ``freeze-*``: SIGSTOP, then SIGCONT (longer than the peer's timeouts);
- ``supplier-outage``: the stub is stopped, then started again;
- ``supplier-5xx|slow|reset``, ``stub-disk-full``: rules in the stub's faults
  file (supplier_stub/faults.py);
- ``icc-reorder|duplicate``: the ICC's faults file (icc_bridge/faults.py);
- ``clock-skew-*``: an ICC worker restarted with ``$B2BSIM_CLOCK_SKEW_MS``,
  then restarted without it;
- ``link-*``: the fault proxies' mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icc_bridge import write_delivery_faults
from simulator.kits.soak.chain import RESTART_WITHIN_S, SoakChain, Supervised
from simulator.kits.soak.schedule import FaultEvent
from simulator.lab.fault_proxy import FaultProxy, ProxyMode
from simulator.vocabulary.errors import B2BSimError, ComponentError
from simulator.vocabulary.messages import CLOCK_SKEW_ENV, now_ms
from supplier_stub import DISK_FULL, write_faults

__all__ = ["Injector"]

log = logging.getLogger(__name__)
Say = Callable[[str], None]

#: Seconds a fault waits for its process to run (it may be coming back from another).
RUNNING_WAIT_S = 60.0


class Injector:
    """Plays a schedule on a chain; counts what was injected and what failed."""

    def __init__(self, chain: SoakChain, faults_log: Path, say: Say) -> None:
        self.chain, self.faults_log, self.say = chain, faults_log, say
        self.injected: Counter[str] = Counter()
        self.failed: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self._rules: dict[int, dict[str, Any]] = {}
        self._icc: dict[str, float] = {}
        self._next_rule = 0

    def start_files(self) -> None:
        write_faults(self.chain.faults_file, [])
        write_delivery_faults(self.chain.icc_faults_file)
        self.faults_log.write_text("")

    # --- playing ---------------------------------------------------------------------
    async def play(self, lane: list[FaultEvent], t0: float, last_start: float) -> None:
        """Play one lane's faults (in order, each at its time or when the previous ended);
        a fault whose time is past ``last_start`` (s after ``t0``) is skipped."""
        for event in lane:
            delay = t0 + event.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - t0 > last_start:
                self.skipped.append(event.to_json())
                continue
            try:
                await self.apply(event)
            except B2BSimError as exc:
                self.failed.append({**event.to_json(), "error": exc.one_line()})
                self.say(f"fault {event.kind} on {event.target} failed: {exc.one_line()}")
            except OSError as exc:  # a process gone between look-up and signal
                self.failed.append({**event.to_json(), "error": str(exc)})

    def _logged(self, event: FaultEvent, **params: Any) -> None:
        record = {
            "at_ms": now_ms(),
            "kind": event.kind,
            "target": event.target,
            "params": {"seconds": event.seconds, **event.params, **params},
        }
        with self.faults_log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.injected[event.kind] += 1
        self.say(f"fault: {event.kind} on {event.target} for {event.seconds:g} s")

    async def apply(self, e: FaultEvent) -> None:
        kind = e.kind
        if kind.startswith("link-"):
            await self._link(e)
        elif kind in ("kill-broker", "freeze-broker"):
            await self._broker(e)
        elif kind.startswith(("kill-", "freeze-", "supplier-outage")):
            await self._process(e)
        elif kind.startswith("clock-skew"):
            await self._clock(e)
        elif kind.startswith("icc-"):
            await self._icc_fault(e)
        else:
            await self._stub_rule(e)

    # --- each kind -------------------------------------------------------------------
    def _supervised(self, e: FaultEvent) -> Supervised:
        c = self.chain
        if e.target == "supplier-stub":
            return c.stub
        if e.target == "ka":
            return c.ka
        return c.worker(e.target)

    async def _running(self, s: Supervised) -> None:
        """Wait (bounded) until ``s`` runs: a fault strikes a running process."""
        deadline = time.monotonic() + RUNNING_WAIT_S
        while s.pid is None or s.held:
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"{s.name} was not running for {RUNNING_WAIT_S:g} s", hint=f"read {s.name}.log"
                )
            await asyncio.sleep(0.5)

    async def _process(self, e: FaultEvent) -> None:
        s = self._supervised(e)
        await self._running(s)
        s.held = True
        try:
            if e.kind.startswith("freeze-"):
                self.chain.freeze(s)
                self._logged(e, pid=s.pid)
                await asyncio.sleep(e.seconds)
                self.chain.thaw(s)
                return
            pid = s.pid
            if e.kind == "supplier-outage":
                await self.chain.halt(s)
            else:
                await self.chain.kill(s)
            self._logged(e, pid=pid)
            await asyncio.sleep(e.seconds)
            await self.chain.try_restart(s, within=RESTART_WITHIN_S)
        finally:
            s.held = False

    async def _broker(self, e: FaultEvent) -> None:
        c = self.chain
        if e.kind == "freeze-broker":
            c.freeze_broker()
            self._logged(e)
            try:
                await asyncio.sleep(e.seconds)
            finally:
                c.thaw_broker()
            return
        await c.kill_broker()
        self._logged(e)
        await asyncio.sleep(e.seconds)
        info = await c.restart_broker()
        self.say(f"broker back on {info.url} in {info.startup_seconds:.1f} s")

    async def _clock(self, e: FaultEvent) -> None:
        """Every ICC worker restarted with its clock ``skew_ms`` off, then restarted true."""
        workers = self.chain.workers
        skewed = {CLOCK_SKEW_ENV: str(int(e.params["skew_ms"]))}
        for s in workers:
            await self._running(s)
        for s in workers:
            s.held = True
        try:
            for s in workers:
                await self.chain.halt(s)
            for s in workers:
                if not await self.chain.try_restart(s, skewed, within=RESTART_WITHIN_S):
                    raise ComponentError(
                        f"{s.name} did not start with a skewed clock", hint=f"read {s.name}.log"
                    )
            self._logged(e)
            await asyncio.sleep(e.seconds)
        finally:
            for s in workers:
                await self.chain.halt(s)
                await self.chain.try_restart(s, within=RESTART_WITHIN_S)
                s.held = False

    async def _icc_fault(self, e: FaultEvent) -> None:
        name = e.kind.removeprefix("icc-")
        self._icc[name] = float(e.params["probability"])
        write_delivery_faults(self.chain.icc_faults_file, **self._icc)
        self._logged(e)
        try:
            await asyncio.sleep(e.seconds)
        finally:
            self._icc[name] = 0.0
            write_delivery_faults(self.chain.icc_faults_file, **self._icc)

    def _rule(self, e: FaultEvent) -> dict[str, Any]:
        p = e.params
        until = {"until_ms": now_ms() + int(e.seconds * 1000)}
        if e.kind == "supplier-5xx":
            return {
                "kind": "status",
                "status": p["status"],
                "probability": p["probability"],
                **until,
            }
        if e.kind == "supplier-slow":
            return {
                "kind": "delay",
                "seconds": p["delay_s"],
                "probability": p["probability"],
                **until,
            }
        if e.kind == "supplier-reset":
            return {"kind": "reset", "probability": p["probability"], **until}
        return {"kind": DISK_FULL}  # the stub's database refuses to grow while it is there

    async def _stub_rule(self, e: FaultEvent) -> None:
        rule = self._rule(e)
        key = self._next_rule
        self._next_rule += 1
        self._rules[key] = rule
        write_faults(self.chain.faults_file, list(self._rules.values()))
        self._logged(e)
        try:
            await asyncio.sleep(e.seconds)
        finally:
            del self._rules[key]
            write_faults(self.chain.faults_file, list(self._rules.values()))

    async def _link(self, e: FaultEvent) -> None:
        c = self.chain
        proxies: list[FaultProxy] = (
            c.stub_proxies
            if e.kind.startswith("link-stub")
            else [c.broker_proxy]
            if c.broker_proxy
            else []
        )
        mode = ProxyMode(e.kind.rsplit("-", 1)[1])
        for proxy in proxies:
            proxy.set_mode(mode, delay_ms=int(e.params.get("delay_ms", 0)))
        self._logged(e, proxies=len(proxies))
        try:
            await asyncio.sleep(e.seconds)
        finally:
            for proxy in proxies:
                proxy.set_mode(ProxyMode.PASS)

    # --- the end -----------------------------------------------------------------------
    async def clear(self) -> None:
        """Stop every fault: proxies pass, no rules, processes thawed and running."""
        c = self.chain
        for proxy in [*c.stub_proxies, *([c.broker_proxy] if c.broker_proxy else [])]:
            proxy.set_mode(ProxyMode.PASS)
        self._rules.clear()
        write_faults(c.faults_file, [])
        self._icc.clear()
        write_delivery_faults(c.icc_faults_file)
        c.thaw_broker()
        for s in c.supervised():
            c.thaw(s)
