"""Start and stop chain components as ``b2bsim serve …`` child processes.

Each component runs in its own process, exactly as an operator would run it,
so the simulator talks to it only through the broker, HTTPS and files.  A
component says it is ready with one JSON line on stdout; its log (stderr)
goes to a file in the run directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulator.lab.procutil import die_with_parent
from simulator.vocabulary.errors import ComponentError


class Component:
    """One running ``b2bsim serve COMPONENT`` process."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.ready: dict[str, Any] = {}

    @classmethod
    async def start(
        cls,
        name: str,
        state: Path,
        args: list[str],
        log: Path,
        *,
        timeout: float = 90.0,
        env: Mapping[str, str] | None = None,
    ) -> Component:
        """Start ``b2bsim --state STATE serve NAME ARGS`` and wait for its ready line.

        ``env`` adds to (or overrides) this process's environment for the child."""
        argv = [sys.executable, "-m", "simulator.cli", "--state", str(state), "serve", name, *args]
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                preexec_fn=die_with_parent(),
                env={**os.environ, **env} if env else None,
            )
        component = cls(name, proc, log)
        try:
            component.ready = await asyncio.wait_for(component._read_ready(), timeout)
        except (TimeoutError, ComponentError) as exc:
            await component.stop()
            why = "did not become ready in time" if isinstance(exc, TimeoutError) else str(exc)
            raise ComponentError(
                f"{name} {why}; last log lines:\n{_tail(log)}",
                hint=f"read {log} for the whole log",
            ) from None
        return component

    async def _read_ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise ComponentError(
                    f"exited with code {await self.proc.wait()} before it was ready"
                )
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("event") == "ready":
                    return msg

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL, as a crash would (fault injection)."""
        if self.running:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
