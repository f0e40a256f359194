"""What each kind of scenario step does, in plain words, for the live view's step bar.

One place for them all: :func:`step_text` gives a step's sentence (what happens)
and what to watch on the page, in English with AF's Swedish terms (the glossary
of the brief: inköpsorder, självfaktura, kreditfaktura, tekniskt kuvert,
leverantör, meddelandetyp, ...).  A scenario's own ``say:`` for a step
replaces both (docs/scenarios.md).  Never a ``key=value`` dump: a kind without
words here still reads as a sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.runs.scenario import Step

__all__ = ["describe_step", "step_text"]


def describe_step(step: Step, suppliers: int | None = None) -> str:
    """A step in plain words: what happens, then what to watch (:func:`step_text`)."""
    text = step_text(step, suppliers)
    return f"{text['what']} {text['watch']}".strip()


def step_text(step: Step, suppliers: int | None = None) -> dict[str, str]:
    """What a step does (``what``) and what to watch on the page (``watch``), in English
    with AF's Swedish terms; the scenario's own ``say:`` replaces both.  ``suppliers``:
    the scenario's supplier count, to say how many messages a ``produce`` makes."""
    if step.say:
        return {"what": step.say, "watch": ""}
    words = _STEP_WORDS.get(type(step).__name__)
    if words is None:
        return {"what": f"A {type(step).__name__} step.", "watch": ""}
    what, watch = words(step, suppliers or 0)
    return {"what": what, "watch": f"Watch {watch}"}


_DOCS = {
    "order": ("purchase order", "inköpsorder"),
    "invoice": ("self-billing invoice", "självfaktura"),
    "credit": ("credit note", "kreditfaktura"),
}
_POISON = {
    "no-headers": "one without KA's headers",
    "unknown-type": "one of an unknown message type (meddelandetyp)",
    "unknown-supplier": "one for a supplier (leverantör) the registry does not know",
    "not-xml": "one whose document is not XML",
}


def _times(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _share(p: float, each: str) -> str:
    return each if p >= 1 else f"{p:.0%} of {each.removeprefix('each ')}s"


def _bg(step: Step) -> str:
    return (
        ", in the background while the next steps go on" if getattr(step, "background", 0) else ""
    )


def _produce(s: Any, suppliers: int) -> tuple[str, str]:
    each = f"each of the {suppliers} suppliers" if suppliers > 1 else "the supplier"
    rate = f" at {s.rate:g} a second" if s.rate else ""
    if s.chains:
        total = f" ({3 * s.chains * suppliers} messages)" if suppliers else ""
        what = (
            f"KA, AF's case system, produces {_times(s.chains, 'chain', 'chains')} for {each}"
            f"{total}{rate}{_bg(s)}: a purchase order (inköpsorder), the self-billing invoice "
            "(självfaktura) that refers to it, and a credit note (kreditfaktura)."
        )
    else:
        en, sv = _DOCS.get(s.doc_type or "", (s.doc_type or "document", ""))
        what = f"KA produces {_times(s.count, en, en + 's')} ({sv}) for {each}{rate}{_bg(s)}."
    return what, (
        "each message go from KA over the broker's queue to the ICC, which wraps it in a signed "
        "envelope (tekniskt kuvert) and pushes it to the supplier, into its ledger."
    )


def _wait(s: Any, _n: int) -> tuple[str, str]:
    return (
        f"The run waits, at most {s.timeout:g} s, until every message produced so far is "
        "loaded into a ledger or dead-lettered.",
        "the counters settle: everything produced loaded or dead-lettered, nothing lost.",
    )


def _sleep(s: Any, _n: int) -> tuple[str, str]:
    return f"The run pauses for {s.seconds:g} s.", "what the chain does by itself meanwhile."


def _supplier_fault(s: Any, _n: int) -> tuple[str, str]:
    scope = f"the next {s.first} requests" if s.first else _share(s.probability, "each request")
    lasts = f" for {s.duration:g} s" if s.duration else ""
    if s.kind == "down":
        return f"The supplier's endpoint goes down for {s.seconds:g} s{_bg(s)}.", (
            "the ICC retry (↻) with growing pauses, losing nothing, until the endpoint is back."
        )
    if s.kind == "clear":
        return "The supplier's endpoint answers normally again.", "the waiting messages go through."
    if s.kind == "delay":
        return f"The supplier's endpoint waits {s.seconds:g} s before answering {scope}{lasts}.", (
            "the ICC wait; an answer slower than its request timeout is a failed push, retried."
        )
    if s.kind == "reset":
        return f"The supplier's endpoint drops the connection of {scope}{lasts}.", (
            "the ICC retry (↻) each dropped push."
        )
    after = f", asking to retry after {s.retry_after:g} s" if s.retry_after else ""
    what = f"The supplier's endpoint answers HTTP {s.status} to {scope}{lasts}{after}."
    if s.status >= 500 or s.status == 429:
        return what, "the ICC retry (↻): the answer may pass, so it delivers in the end."
    return what, "the ICC put the message in the dead-letter queue at once: a final refusal."


def _icc_fault(s: Any, _n: int) -> tuple[str, str]:
    if s.kind == "clear":
        return "The ICC delivers normally again.", "the messages arrive in KA's order once more."
    if s.kind == "duplicate":
        return f"The ICC is made to push {_share(s.probability, 'each envelope')} twice.", (
            "the supplier answer 'duplicate' to the second push and load each message once."
        )
    return (
        "The ICC is made to deliver a supplier's next message before the current one, "
        f"{'every time' if s.probability >= 1 else f'{s.probability:.0%} of the time'}.",
        "the supplier hold the early message back ('held') until its predecessor arrives, "
        "so that its ledger (reskontra) keeps KA's order: timestamp, then sequence number.",
    )


def _poison(s: Any, _n: int) -> tuple[str, str]:
    kinds = "; ".join(_POISON.get(k, k) for k in s.kinds)
    return (
        f"Someone puts {_times(len(s.kinds), 'message', 'messages')} on KA's queue that "
        f"the ICC can never deliver: {kinds}.",
        "each go to the dead-letter queue at once with its reason, while the others flow on.",
    )


def _clock(s: Any, _n: int) -> tuple[str, str]:
    way = "ahead" if s.ka_skew_ms > 0 else "behind"
    return f"KA's clock is set {abs(s.ka_skew_ms)} ms {way} of the true time.", (
        "the timestamps (tidsstämpel): the supplier orders by them, then by sequence number."
    )


def _attack(s: Any, _n: int) -> tuple[str, str]:
    return f"An attacker sends {', '.join(s.kinds)} to supplier {s.supplier}'s endpoint.", (
        "each one be refused with its code (REFUSED in the log); nothing is stored."
    )


def _pki(s: Any, _n: int) -> tuple[str, str]:
    who = f"Supplier {s.supplier}'s" if s.supplier else "The ICC's own"
    refused = "the ICC refuse to deliver to it: after its retries, a dead letter with the reason."
    texts = {
        "revoke": (f"{who} certificate (certifikat) is revoked by the test CA.", refused),
        "expire": (f"{who} registered certificate (certifikat) expires.", refused),
        "rotate": (
            f"{who} certificate is renewed (rotated), and the registry updated.",
            "the deliveries go on; the envelope's certificate field changes.",
        ),
        "swap": (
            f"{who} endpoint presents supplier {s.other}'s certificate.",
            "the ICC refuse a certificate other than the registered one.",
        ),
        "move": (
            f"{who} endpoint moves to a new URL, and the registry is updated.",
            "the deliveries go on to the new address: the envelope's URL field changes.",
        ),
    }
    if s.action == "revoke" and not s.supplier:
        return texts["revoke"][0], "the suppliers refuse the ICC: its pushes fail."
    return texts.get(s.action, (f"{who} certificate changes ({s.action}).", refused))


def _kill_icc(s: Any, _n: int) -> tuple[str, str]:
    when = f" once {s.after} messages are loaded" if s.after else ""
    if getattr(s, "at", "any") == "receipt":
        when += ", each time right after supplier 1's receipt and before the broker ack"
    every = f", every {s.every:g} s" if s.times > 1 else ""
    return f"An ICC worker is killed (kill -9) {_times(s.times, 'time', 'times')}{every}{when}.", (
        "the broker hand an unacknowledged message out again, and the supplier answer 'duplicate'."
    )


def _restart_broker(s: Any, _n: int) -> tuple[str, str]:
    return f"The broker (ActiveMQ) stops for {s.down:g} s and starts again.", (
        "the queue keep its messages; the ICC reconnects and nothing is lost."
    )


def _kill_broker(s: Any, _n: int) -> tuple[str, str]:
    return f"Broker {s.index} of the network is killed (kill -9) for {s.down:g} s.", (
        "the messages take another broker of the network and arrive all the same."
    )


#: The words of each kind of step (by class name): what happens, and what to watch.
_STEP_WORDS: dict[str, Callable[[Any, int], tuple[str, str]]] = {
    "Produce": _produce,
    "Wait": _wait,
    "Sleep": _sleep,
    "SupplierFault": _supplier_fault,
    "IccFault": _icc_fault,
    "Poison": _poison,
    "Clock": _clock,
    "Attack": _attack,
    "PkiChange": _pki,
    "KillIcc": _kill_icc,
    "RestartBroker": _restart_broker,
    "KillBroker": _kill_broker,
}
