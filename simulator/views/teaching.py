"""What the live view teaches: AF's fields, what befell a message, and the pause of each step.

The texts are in English and Swedish (``FIELDS``, ``EVENT_TEXT``; a dead-letter
code's Swedish text is in the catalogue, simulator.vocabulary.codes).  The page
(``simulator/data/ui.html``) shows them beside a message and its envelope;
:mod:`simulator.views.ui_server` serves them.  Teaching mode
(``b2bsim run --ui --step``) pauses before each step until "next" is pressed:
:class:`StepGate`; what each step does, in words, is :mod:`simulator.views.step_words`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from simulator.views.explain import explain_code
from simulator.views.live_records import MessageState
from simulator.vocabulary.codes import CATALOGUE
from simulator.vocabulary.envelope import SBDH_NS
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.xmlsafe import parse_xml

if TYPE_CHECKING:
    from simulator.runs.scenario import Scenario

__all__ = [
    "EVENT_TEXT",
    "FIELDS",
    "STEP_ALLOWANCE",
    "StepGate",
    "envelope_view",
    "explanations",
    "field_labels",
    "message_detail",
    "teaching",
    "where",
]

#: The fields AF's description names: Scope type → (English label, Swedish label, English, Swedish).
FIELDS: dict[str, tuple[str, str, str, str]] = {
    "ORG_NUMBER": (
        "Organisation number",
        "Organisationsnummer",
        "The addressee: the supplier's organisation number (10 digits with a Luhn check digit). "
        "A supplier refuses an envelope addressed to anyone else (421 WRONG_ADDRESSEE).",
        "Mottagaren: leverantörens organisationsnummer (10 siffror med kontrollsiffra). "
        "Leverantören avvisar ett kuvert som är adresserat till någon annan (421 WRONG_ADDRESSEE).",
    ),
    "RECEIVER_CERT_SHA256": (
        "Certificate",
        "Certifikat",
        "The SHA-256 fingerprint of the unique certificate AF issued to this supplier. The ICC "
        "accepts only this certificate when it connects, and the supplier checks it is its own.",
        "SHA-256-fingeravtrycket av det unika certifikat som AF har utfärdat till leverantören. "
        "ICC godtar bara detta certifikat vid anslutningen, och leverantören kontrollerar att "
        "det är dess eget.",
    ),
    "RECEIVER_URL": (
        "URL",
        "URL",
        "The supplier's current endpoint, where the ICC pushes the envelope (for a supplier "
        "that pulls: the ICC's outbox).",
        "Leverantörens aktuella adress, dit ICC skickar kuvertet (för en leverantör som hämtar "
        "själv: ICC:s utkorg).",
    ),
    "MESSAGE_TYPE": (
        "Message type",
        "Meddelandetyp",
        "What the content is: INKOPSORDER (purchase order), SJALVFAKTURA (self-billing "
        "invoice) or KREDIT (credit note).",
        "Vad innehållet är: INKOPSORDER (inköpsorder), SJALVFAKTURA (självfaktura) eller "
        "KREDIT (kreditfaktura).",
    ),
    "PRODUCED_AT": (
        "Timestamp",
        "Tidsstämpel",
        "When KA produced the message (UTC, to the millisecond). The supplier sorts on it, then "
        "on the sequence number, to load messages in the order KA produced them.",
        "När KA skapade meddelandet (UTC, på millisekunden). Leverantören sorterar på den, och "
        "sedan på löpnumret, för att läsa in meddelandena i den ordning KA skapade dem.",
    ),
}

#: What befell a message → (English, Swedish).
EVENT_TEXT: dict[str, tuple[str, str]] = {
    "retry": (
        "A push failed in a way that may pass (a 5xx answer, a timeout, no connection): the ICC "
        "waits and tries again, in order, and loses nothing.",
        "En leverans misslyckades på ett sätt som kan gå över (ett 5xx-svar, en timeout, ingen "
        "anslutning): ICC väntar och försöker igen, i ordning, och tappar ingenting.",
    ),
    "dead_lettered": (
        "The ICC gave up on this message and put it in the dead-letter queue with its reason. "
        "It is not delivered unless someone fixes the cause and replays it.",
        "ICC gav upp meddelandet och lade det i kön för olevererbara meddelanden (DLQ) med "
        "orsaken. Det levereras inte förrän någon åtgärdar orsaken och skickar om det.",
    ),
    "duplicate": (
        "The supplier got an envelope it already had (same envelope id): it answers "
        "'duplicate' and never loads it twice.",
        "Leverantören fick ett kuvert som den redan hade (samma kuvert-id): den svarar "
        "'duplicate' och läser aldrig in det två gånger.",
    ),
    "held": (
        "The supplier stored it, but held it back until its predecessor (by KA's timestamp and "
        "sequence) arrived, so that its ledger follows KA's order.",
        "Leverantören sparade det men höll inne det tills föregående meddelande (enligt KA:s "
        "tidsstämpel och löpnummer) kom, så att reskontran följer KA:s ordning.",
    ),
    "reordered": (
        "Injected fault: the ICC delivered this message before the one KA produced before it.",
        "Injicerat fel: ICC levererade meddelandet före det som KA skapade närmast före.",
    ),
    "late": (
        "Loaded after a later message of the same supplier: the supplier stopped waiting for it.",
        "Inläst efter ett senare meddelande till samma leverantör: leverantören slutade vänta.",
    ),
    "redelivered": (
        "The broker handed it out more than once (a worker died before its ack): the "
        "envelope id is the same, so the supplier sees a duplicate, not a new message.",
        "Meddelandekön lämnade ut det mer än en gång (en ICC-process dog före kvitteringen): "
        "kuvert-id:t är detsamma, så leverantören ser en dubblett, inte ett nytt meddelande.",
    ),
    "loaded": (
        "Loaded into the supplier's ledger, in KA's order: the message has arrived.",
        "Inläst i leverantörens reskontra, i KA:s ordning: meddelandet har kommit fram.",
    ),
    "refused": (
        "The supplier refused a hostile or forged request with this code; nothing was stored.",
        "Leverantören avvisade en fientlig eller förfalskad begäran med den här koden; inget "
        "sparades.",
    ),
}

_AF_SCOPE = re.compile(r"<(?:[\w.-]+:)?Type>([A-Z_0-9]+)</")
_BLOCK_START = re.compile(r"^\s*<(?:[\w.-]+:)?(Scope|Receiver)>\s*$")


#: Seconds added to a scenario's timeout in teaching mode: the pauses count towards it.
STEP_ALLOWANCE = 3600.0


def teaching(scenario: Scenario) -> Scenario:
    """``scenario`` for teaching mode: its timeout allows for the pauses between steps."""
    return dataclasses.replace(scenario, timeout=scenario.timeout + STEP_ALLOWANCE)


def message_detail(m: MessageState, view: dict[str, Any] | None) -> dict[str, Any]:
    """One message for the page: its state, its envelope's ``view`` (None: none stored) with
    the AF fields' labels, and what befell it, in English and Swedish."""
    note = None
    if view is None:
        view = {"envelope": [], "document": "", "fields": {}, "error": None}
        note = (
            f"No envelope stored for this message (yet): it is {where(m)}."
            if not m.code
            else "No envelope was stored: the ICC dead-lettered the message."
        )
    return {
        "message": m.to_json(),
        **view,
        "labels": field_labels(),
        "explanations": explanations(m),
        "note": note,
    }


def field_labels() -> dict[str, dict[str, str]]:
    """The AF fields' labels and what each is about, in English and Swedish, for the page."""
    return {
        k: {"en": v[0], "sv": v[1], "about_en": v[2], "about_sv": v[3]} for k, v in FIELDS.items()
    }


def envelope_view(raw: bytes) -> dict[str, Any]:
    """A stored envelope for the page: pretty-printed, AF fields marked, document apart.

    Returns ``envelope`` (segments ``{"text", "field"}``; ``field`` names the AF
    field a segment shows, or is null), ``document`` (text), ``fields`` (the
    AF fields' values) and ``error`` (why it is shown as plain text, or null).
    The XML is parsed with :func:`simulator.vocabulary.xmlsafe.parse_xml` only.
    """
    try:
        root = parse_xml(raw)
    except B2BSimError as exc:
        text = raw.decode("utf-8", "replace")
        return {
            "envelope": [{"text": text, "field": None}],
            "document": "",
            "fields": {},
            "error": exc.one_line(),
        }
    scopes = {}
    for scope in root.iter(f"{{{SBDH_NS}}}Scope"):
        kind = scope.findtext(f"{{{SBDH_NS}}}Type") or ""
        scopes[kind] = scope.findtext(f"{{{SBDH_NS}}}InstanceIdentifier") or ""
    envelope = copy.deepcopy(root)
    document = ""
    sbd = envelope.find(f"{{{SBDH_NS}}}StandardBusinessDocument")
    if sbd is not None:
        payload = next(
            (c for c in sbd if isinstance(c.tag, str) and not c.tag.startswith(f"{{{SBDH_NS}}}")),
            None,
        )
        if payload is not None:
            doc = copy.deepcopy(payload)
            etree.indent(doc, space="  ")
            document = etree.tostring(doc, encoding="unicode")
            note = etree.Comment(" the business document: shown below ")
            note.tail = payload.tail
            sbd.replace(payload, note)
    etree.indent(envelope, space="  ")
    text = etree.tostring(envelope, encoding="unicode")
    fields = {k: scopes[k] for k in FIELDS if k in scopes}
    return {"envelope": _mark_fields(text), "document": document, "fields": fields, "error": None}


def _mark_fields(text: str) -> list[dict[str, str | None]]:
    """Split pretty-printed envelope text into segments, marking each AF field's block."""
    lines = text.splitlines(keepends=True)
    segments: list[dict[str, str | None]] = []
    plain: list[str] = []
    i = 0
    while i < len(lines):
        start = _BLOCK_START.match(lines[i])
        if start is None:
            plain.append(lines[i])
            i += 1
            continue
        end = next(
            (
                j
                for j in range(i + 1, len(lines))
                if f"{start.group(1)}>" in lines[j] and "</" in lines[j]
            ),
            len(lines) - 1,
        )
        block = "".join(lines[i : end + 1])
        kind = "ORG_NUMBER" if start.group(1) == "Receiver" else None
        if kind is None and (m := _AF_SCOPE.search(block)) and m.group(1) in FIELDS:
            kind = m.group(1)
        if kind is None:
            plain.append(block)
        else:
            if plain:
                segments.append({"text": "".join(plain), "field": None})
                plain = []
            segments.append({"text": block, "field": kind})
        i = end + 1
    if plain:
        segments.append({"text": "".join(plain), "field": None})
    return segments


def explanations(m: MessageState) -> list[dict[str, str]]:
    """What befell ``m``, each explained in English and Swedish."""
    keys = []
    if m.retries:
        keys.append("retry")
    if m.consumed > 1:
        keys.append("redelivered")
    if m.duplicates:
        keys.append("duplicate")
    if m.held:
        keys.append("held")
    if m.reordered:
        keys.append("reordered")
    if m.late:
        keys.append("late")
    if m.station == "ledger":
        keys.append("loaded")
    out = [{"key": k, "en": EVENT_TEXT[k][0], "sv": EVENT_TEXT[k][1]} for k in keys]
    if m.code:
        x = explain_code(m.code)
        entry = CATALOGUE.get(m.code)
        en = f"{EVENT_TEXT['dead_lettered'][0]} {m.code}: {x.title}. {x.meaning} {x.fix}"
        sv = f"{EVENT_TEXT['dead_lettered'][1]} {m.code}: " + (
            entry.sv
            if entry is not None and entry.sv is not None
            else f"se förklaringen på engelska ({x.title})."
        )
        out.append({"key": m.code, "en": en, "sv": sv})
    return out


def where(m: MessageState) -> str:
    """Where ``m`` is now, in words (``at the ICC``)."""
    return {
        "ka": "at KA",
        "queue": "on the broker's queue",
        "icc": "at the ICC",
        "supplier": "at the supplier",
        "ledger": "in the ledger",
        "dead": "in the dead-letter queue",
    }.get(m.station, m.station)


class StepGate:
    """Teaching mode's pause: a step waits in :meth:`wait` until :meth:`release` (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    async def wait(self, announce: Callable[[], None]) -> None:
        """Wait, in the running loop, until released; ``announce`` is called once armed.

        The gate is armed before ``announce`` runs, so a release it prompts is never missed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._gate = (loop, future)
        announce()
        try:
            await future
        finally:
            with self._lock:
                if self._gate is not None and self._gate[1] is future:
                    self._gate = None

    def release(self) -> bool:
        """Release the step that waits; False if none waits."""
        with self._lock:
            gate, self._gate = self._gate, None
        if gate is None:
            return False
        loop, future = gate

        def done() -> None:
            if not future.done():
                future.set_result(None)

        with contextlib.suppress(RuntimeError):  # the run's loop has closed
            loop.call_soon_threadsafe(done)
        return True

    @property
    def waiting(self) -> bool:
        """A step waits for "next"."""
        with self._lock:
            return self._gate is not None
