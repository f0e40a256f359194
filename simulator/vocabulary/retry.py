"""How the ICC retries a delivery: the policy, its defaults and its checks.

Defaults are documented in docs/icc.md.  A supplier may have its own policy
in the registry (``"retry": {...}``); anything not given takes the default.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from simulator.vocabulary.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by age."""

    max_attempts: int = 8  # attempts per message before it is dead-lettered
    initial_delay: float = 0.2  # seconds after the first failure
    max_delay: float = 10.0  # the longest wait between attempts
    multiplier: float = 2.0  # each delay is this times the one before
    max_age: float = 300.0  # seconds since the first attempt after which it is dead-lettered

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append("max_attempts must be at least 1")
        for name in ("initial_delay", "max_delay", "max_age"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number of seconds ≥ 0")
        if self.multiplier < 1 or not math.isfinite(self.multiplier):
            problems.append("multiplier must be at least 1")
        if not problems and self.initial_delay > self.max_delay:
            problems.append("initial_delay must not exceed max_delay")
        if problems:
            raise ConfigError(
                f"impossible retry policy: {'; '.join(problems)}",
                hint="see docs/icc.md for the settings and their defaults",
            )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1).

        ``Retry-After`` is honoured, capped at ``max_delay``; otherwise full
        jitter between half and the whole exponential delay.
        """
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def gives_up(self, attempts: int, age: float) -> bool:
        """True once ``attempts`` were made or the first one is ``age`` seconds old."""
        return attempts >= self.max_attempts or age >= self.max_age

    @classmethod
    def from_json(cls, raw: Any, where: str) -> RetryPolicy:
        """A policy from a JSON/YAML mapping; unknown keys are an error naming ``where``."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: retry must be a mapping", hint="e.g. {max_attempts: 5}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown retry setting(s) {unknown}", hint=f"use {sorted(known)}"
            )
        try:
            return cls(**{k: type(getattr(cls(), k))(v) for k, v in raw.items()})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
            raise ConfigError(f"{where}: retry values must be numbers", hint=str(exc)) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
