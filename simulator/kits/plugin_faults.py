"""The faults a pytest test injects into ``b2bsim_chain``: public calls on the chain.

Each call plays the scenario step of the same name (:mod:`simulator.runs.scenario`,
docs/scenarios.md) with the runner's own code (:class:`simulator.runs.steps.StepPlayer`),
so a fault in a test is the fault of a scenario run.  With an external
supplier, a step that does not apply to it
(:func:`simulator.runs.scenario.not_applicable_to_endpoint`) is refused with
the reason, never silently skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.vocabulary.errors import ConfigError

if TYPE_CHECKING:
    from simulator.kits.plugin_config import ExternalSupplier
    from simulator.lab.broker import LocalBroker
    from simulator.runs.scenario import Step

__all__ = ["FaultCalls"]

OWN_BROKER_HINT = "mark the test @pytest.mark.b2bsim(own_broker=True): the chain starts its own"


class FaultCalls:
    """The public fault calls of :class:`~simulator.kits.plugin_chain.B2BSimChain`."""

    external: ExternalSupplier | None
    broker: LocalBroker | None

    def _play(self, step: Step, *, background: bool = False, timeout: float = 600) -> None:
        raise NotImplementedError  # B2BSimChain plays it

    def play(self, step: Step, *, background: bool = False) -> None:
        """Play any scenario step (``simulator.runs.scenario``: ``KillIcc``, ``IccFault``,
        ``RestartBroker``, ``KillBroker``, ``Poison``, ``PkiChange``, ``Clock``, …) now,
        or in the background (``wait()`` waits for it).

        ConfigError if the step does not apply to the external supplier, with the reason.
        """
        from simulator.runs.scenario import KillBroker, RestartBroker, not_applicable_to_endpoint

        reason = None if self.external is None else not_applicable_to_endpoint(step)
        if reason is not None:
            raise ConfigError(
                f"not applicable to the external endpoint: {reason}",
                hint="inject it into a chain without --b2bsim-endpoint (the reference stub)",
            )
        if isinstance(step, RestartBroker | KillBroker) and self.broker is None:
            raise ConfigError(
                "the chain uses the session's broker, which it may not restart or kill",
                hint=OWN_BROKER_HINT,
            )
        self._play(step, background=background)

    # --- the ICC ------------------------------------------------------------------------
    def kill_icc(
        self, times: int = 1, *, every: float = 1.0, after: int = 0, background: bool = False
    ) -> None:
        """kill -9 an ICC worker and start it again, ``times`` times, ``every`` seconds.

        The broker hands the messages the killed worker had not acknowledged to
        the restarted one, which signs them again (same envelope id and
        document, a new signature and creation time) and re-sends them: an
        endpoint that had stored one must answer ``200 duplicate``, never 409.
        ``after``: first wait until that many messages are loaded by the stub
        or acknowledged (2xx) by the external endpoint, so that the kill comes
        mid-flight.  Returns when the worker is back (``background``: at once).
        """
        from simulator.runs.scenario import KillIcc

        self.play(KillIcc(times=times, every=every, after=after), background=background)

    def duplicate(self, probability: float = 1.0) -> None:
        """From now on, after a successful push, the ICC pushes the same envelope again with
        ``probability``: it must be answered ``200 duplicate`` and not loaded again."""
        from simulator.runs.scenario import IccFault

        self.play(IccFault(kind="duplicate", probability=probability))

    def reorder(self, probability: float = 1.0) -> None:
        """From now on the ICC delivers a supplier's next message before the current one with
        ``probability``: the endpoint must restore KA's order from the sequence
        (docs/supplier.md), which only a read-back shows."""
        from simulator.runs.scenario import IccFault

        self.play(IccFault(kind="reorder", probability=probability))

    def clear_icc_faults(self) -> None:
        """The ICC stops duplicating and reordering."""
        from simulator.runs.scenario import IccFault

        self.play(IccFault(kind="clear"))

    def poison(self, *kinds: str) -> None:
        """Put messages on KA's queue that the ICC must dead-letter at once (``no-headers``,
        ``unknown-type``, ``unknown-supplier``, ``not-xml``; none given: all four)."""
        from simulator.runs.scenario import POISON_KINDS, Poison

        self.play(Poison(kinds=kinds or POISON_KINDS))

    # --- the broker --------------------------------------------------------------------
    def restart_broker(self, down: float = 1.0, *, background: bool = False) -> None:
        """Stop the chain's broker, keep it down ``down`` s, start it again on its port.

        KA and the ICC reconnect; nothing may be lost or loaded twice.  Needs a
        broker of the chain's own: ``@pytest.mark.b2bsim(own_broker=True)``.
        """
        from simulator.runs.scenario import RestartBroker

        self.play(RestartBroker(down=down), background=background)

    def kill_broker(self, down: float = 1.0, *, background: bool = False) -> None:
        """kill -9 the chain's broker, keep it down ``down`` s, start it again.

        Needs a broker of the chain's own: ``@pytest.mark.b2bsim(own_broker=True)``.
        """
        from simulator.runs.scenario import KillBroker

        self.play(KillBroker(index=1, down=down), background=background)

    # --- certificates and KA --------------------------------------------------------------
    def revoke_certificate(self, supplier: int = 0) -> None:
        """Revoke the certificate of supplier number ``supplier`` (from 1; 0: the ICC's) and
        publish the run's CRL (RUN_DIR/pki/crl.pem): the ICC refuses that supplier's
        server from now on.  Not applicable to the external supplier, nor the ICC's
        with one (the external supplier reads another CRL)."""
        from simulator.runs.scenario import PkiChange

        self.play(PkiChange(action="revoke", supplier=supplier))

    def rotate_certificate(self, supplier: int) -> None:
        """A new key and certificate for supplier number ``supplier`` (from 1), registered at
        once: the ICC pins the new one from the next delivery on."""
        from simulator.runs.scenario import PkiChange

        self.play(PkiChange(action="rotate", supplier=supplier))

    def skew_ka_clock(self, ms: int) -> None:
        """KA's clock runs ``ms`` milliseconds off from now on (its timestamps)."""
        from simulator.runs.scenario import Clock

        self.play(Clock(ka_skew_ms=ms))
