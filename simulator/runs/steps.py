"""Playing a scenario's steps against a running chain, KA's producer in this process.

Each step (:mod:`simulator.runs.scenario`) becomes an action on the chain
(:class:`simulator.runs.chain.RunningChain`): produce, wait until settled,
sleep, skew KA's clock, kill or restart components, faults, poison messages,
attacks and PKI changes.  Background steps run alongside the next ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ka_producer import Pacer, Producer, documents_for, publish_round
from ka_producer.documents import DocumentFactory, Seller
from simulator.runs.attacks import Attacker, record
from simulator.runs.chain import RunningChain, rule_for
from simulator.runs.reconcile import dead_lettered_ids, delivered_ids, produced_ids
from simulator.runs.scenario import (
    Attack,
    Clock,
    IccFault,
    KillBroker,
    KillIcc,
    PkiChange,
    Poison,
    Produce,
    RestartBroker,
    Scenario,
    Sleep,
    Step,
    SupplierFault,
    Wait,
    not_applicable_to_endpoint,
)
from simulator.runs.stub_records import latest_envelope, loaded_messages
from simulator.vocabulary.broker_source import GIVE_UP_AFTER
from simulator.vocabulary.messages import Header, MessageMeta, MessageType, now_ms
from simulator.vocabulary.registry import Registry

__all__ = ["UNREGISTERED_ORG", "StepPlayer"]

Say = Callable[[str], None]

#: A valid organisation number that no run's registry holds (poison messages).
UNREGISTERED_ORG = "5560360793"
#: How long `{kill: icc, at: receipt}` waits for supplier 1's receipt before it gives up a kill.
RECEIPT_WITHIN = 30.0


class StepPlayer:
    """Plays a scenario's steps in order; background steps run alongside."""

    def __init__(
        self, scenario: Scenario, chain: RunningChain, sellers: list[Seller], say: Say
    ) -> None:
        self.scenario, self.chain, self.sellers, self.say = scenario, chain, sellers, say
        self.factory = DocumentFactory(scenario.seed)
        self.skew_ms = 0
        self.produced = 0
        self.background: list[asyncio.Task[None]] = []
        self.poisoned: set[str] = set()
        self.before_step: Callable[[int, Step], Awaitable[None]] | None = None
        # The organisation number at an external endpoint (b2bsim run --endpoint), if any;
        # and what KA's ids are salted with then (the endpoint remembers earlier runs).
        self.external: str | None = None
        self.id_salt = ""
        # All of them, with --target (supplier 1 first; ``external`` is the first); and
        # the last sequence each had in earlier runs, from which KA numbers on.
        self.externals: tuple[str, ...] = ()
        self.sequences_after: dict[str, int] = {}

    def clock(self) -> int:
        return now_ms() + self.skew_ms

    async def play(self) -> None:
        spec = self.chain.spec
        produced_log = spec.run_dir / "produced.jsonl"
        async with Producer(
            spec.broker_url,
            queue=spec.queue,
            produced_log=produced_log,
            outbox=spec.run_dir / "ka-outbox.sqlite",
            clock=self.clock,
            give_up=spec.broker_give_up or GIVE_UP_AFTER,
        ) as ka:
            self.ka = ka
            ka.continue_sequences(self.sequences_after)
            for index, step in enumerate(self.scenario.steps):
                if self.before_step is not None:
                    await self.before_step(index, step)
                action = self._action(step)
                if getattr(step, "background", False):
                    self.background.append(asyncio.create_task(action))
                else:
                    await action
            if self.background or not isinstance(self.scenario.steps[-1], Wait):
                await self._wait(Wait(timeout=self.scenario.timeout))

    async def play_step(self, step: Step) -> None:
        """Play one step now, as :meth:`play` does (``self.ka`` set; not in the background).

        The pytest plugin's fault calls (simulator/kits/plugin_faults.py) come here.
        """
        await self._action(step)

    def _action(self, step: Step) -> Coroutine[Any, Any, None]:
        reason = self._skipped(step)
        if reason is not None:  # aimed at the external supplier: not ours to do
            return self._not_applicable(reason)
        reason = self._not_for_external(step)
        if reason is not None:  # played for the stub's suppliers only
            self.say(
                f"not applicable to the external endpoint (the stub's suppliers get it): {reason}"
            )
        return self._played(step)

    def _not_for_external(self, step: Step) -> str | None:
        if self.external is None:
            return None
        return not_applicable_to_endpoint(step, max(1, len(self.externals)))

    def _skipped(self, step: Step) -> str | None:
        """Why an attack or certificate change is not played (aimed at the external one;
        a revocation of the ICC is played: the stub's suppliers read the run's CRL)."""
        if not isinstance(step, Attack | PkiChange):
            return None
        if isinstance(step, PkiChange) and step.action == "revoke" and step.supplier == 0:
            return None
        return self._not_for_external(step)

    def _played(self, step: Step) -> Coroutine[Any, Any, None]:
        if isinstance(step, Produce):
            return self._produce(step)
        if isinstance(step, Wait):
            return self._wait(step)
        if isinstance(step, Sleep):
            return asyncio.sleep(step.seconds)
        if isinstance(step, Clock):
            return self._clock(step)
        if isinstance(step, KillIcc):
            return self._kill(step)
        if isinstance(step, RestartBroker):
            return self.chain.restart_broker(step.down)
        if isinstance(step, KillBroker):
            return self.chain.kill_broker(step.index, step.down)
        if isinstance(step, Poison):
            return self._poison(step)
        if isinstance(step, IccFault):
            return self._icc_fault(step)
        if isinstance(step, Attack):
            return self._attack(step)
        if isinstance(step, PkiChange):
            return self._pki(step)
        return self._supplier_fault(step)

    async def _not_applicable(self, reason: str) -> None:
        self.say(f"not applicable to the external endpoint, skipped: {reason}")

    async def _produce(self, step: Produce) -> None:
        pacer = Pacer(step.rate)
        rounds = step.chains or step.count
        for _ in range(rounds):
            self.produced += await publish_round(
                self.ka,
                self.factory,
                self.sellers,
                doc_type=step.doc_type,
                pacer=pacer,
                id_salt=self.id_salt,
            )
        await self.ka.flush()
        self.say(f"KA produced {self.produced} message(s)")

    async def _clock(self, step: Clock) -> None:
        self.skew_ms = step.ka_skew_ms
        self.say(f"fault: KA's clock skewed by {step.ka_skew_ms} ms")

    async def _kill(self, step: KillIcc) -> None:
        if step.after:
            # The stub's SQLite file is the only signal: poll it.
            while len(await self._loaded()) < step.after:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for n in range(step.times):
            if step.at == "receipt":
                await self.chain.kill_at_receipt(self._org(1), within=RECEIPT_WITHIN)
            else:
                await self.chain.kill_worker()
            if n < step.times - 1:
                await asyncio.sleep(step.every)

    async def _supplier_fault(self, step: SupplierFault) -> None:
        if step.kind == "down":
            await self.chain.supplier_down(step.seconds)
            return
        if step.kind == "clear":
            self.chain.supplier_rule(None)
            self.say("fault: supplier faults cleared")
            return
        self.chain.supplier_rule(
            rule_for(
                step.kind,
                seconds=step.seconds,
                status=step.status,
                retry_after=step.retry_after,
                probability=step.probability,
                first=step.first,
                duration=step.duration,
            )
        )
        self.say(f"fault: supplier answers {step.kind} (p={step.probability:g})")

    def _org(self, number: int) -> str:
        """The organisation number of supplier ``number`` (from 1) of the scenario."""
        return self.sellers[number - 1].org_number

    async def _pki(self, step: PkiChange) -> None:
        if step.action == "revoke":
            self.chain.revoke(self._org(step.supplier) if step.supplier else None)
        elif step.action == "expire":
            self.chain.expire(self._org(step.supplier))
        elif step.action == "rotate":
            self.chain.rotate(self._org(step.supplier))
        elif step.action == "move":
            self.chain.move(self._org(step.supplier))
        else:
            self.chain.swap(self._org(step.supplier), self._org(step.other))

    async def _attack(self, step: Attack) -> None:
        spec = self.chain.spec
        registry = Registry.load(spec.run_dir / "registry.json")
        target = registry.lookup(self._org(step.supplier))
        # The other supplier whose key the attacks borrow: one of ours (an external
        # supplier's key is its own, not in the run's PKI).
        theirs = {*self.externals, *([self.external] if self.external else [])}
        other = next(
            s for s in registry if s.org_number != target.org_number and s.org_number not in theirs
        )
        seller = self.sellers[step.supplier - 1]
        document = documents_for(DocumentFactory(self.scenario.seed + 1), seller, doc_type="order")
        replay = await asyncio.to_thread(latest_envelope, self.chain.db, target.org_number)
        attacker = Attacker(spec.state, target, other, document[0].xml, replay)
        for kind in step.kinds:
            outcome = await attacker.run(kind)
            record(spec.run_dir / "attacks.jsonl", outcome)
            self.say(outcome.summary())

    async def _icc_fault(self, step: IccFault) -> None:
        self.chain.icc_fault(step.kind, step.probability)
        self.say(f"fault: the ICC {step.kind}s deliveries (p={step.probability:g})")

    async def _poison(self, step: Poison) -> None:
        """Messages the ICC must dead-letter at once, sent beside KA's own."""
        org = self.sellers[0].org_number
        doc = documents_for(self.factory, self.sellers[0], doc_type="order")[0].xml.decode()
        for kind in step.kinds:
            meta = MessageMeta.new(MessageType.INKOPSORDER, org, 10**9, message_id=f"poison-{kind}")
            headers, body = meta.headers(), doc
            if kind == "no-headers":
                headers = {"b2b-message-id": meta.message_id}
            elif kind == "unknown-type":
                headers[Header.MESSAGE_TYPE] = "FAKTURA"
            elif kind == "unknown-supplier":
                headers[Header.ORG_NUMBER] = headers[Header.GROUP] = UNREGISTERED_ORG
            else:
                body = "this is not XML"
            await self.ka.send_raw(headers, body)
            self.poisoned.add(meta.message_id)
        self.say(f"fault: {len(step.kinds)} poison message(s) on KA's queue")

    async def _loaded(self) -> set[str]:
        """Messages loaded by the stub; and the external supplier's that it acknowledged
        with a 2xx receipt (its own ledger is graded after the run, from its read-back)."""
        loaded = await asyncio.to_thread(loaded_messages, self.chain.db)
        ids = {m for m, *_ in loaded}
        for org in self.externals or ((self.external,) if self.external is not None else ()):
            ids |= delivered_ids(self.chain.events_files(), org)
        return ids

    async def _wait(self, step: Wait) -> None:
        """Let background steps finish, then wait until all is loaded or dead-lettered."""
        tasks, self.background = self.background, []
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + step.timeout
        while True:
            loaded = await self._loaded()
            dead = dead_lettered_ids(self.chain.events_files())
            produced = produced_ids(self.chain.spec.run_dir / "produced.jsonl")
            counts = settle_counts(produced, loaded, dead, self.poisoned)
            if produced <= loaded | dead and self.poisoned <= dead:
                self.say(f"settled: {counts}")
                return
            if time.monotonic() > deadline:
                self.say(f"wait timed out: {counts}")
                return
            await asyncio.sleep(0.2)


def settle_counts(produced: set[str], loaded: set[str], dead: set[str], poisoned: set[str]) -> str:
    """How far KA's messages have come, each counted once, poison apart.

    A message loaded and also dead-lettered (stored, then given up on) counts
    as loaded; poison messages are not KA's, so they are told separately.
    """
    done = produced & loaded
    given_up = (produced & dead) - loaded
    told = f"{len(done)} loaded, {len(given_up)} dead-lettered of {len(produced)} produced"
    pending = len(produced) - len(done) - len(given_up)
    if pending:
        told += f", {pending} still on the way"
    if poisoned:
        told += f"; {len(poisoned & dead)} of {len(poisoned)} poison message(s) dead-lettered"
    return told
