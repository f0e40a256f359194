"""One entry of the catalogue of codes: what a code is, and what it means in words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """What kind of code an entry is."""

    #: A problem code (RFC 9457) a receiver answers with; the entry has its HTTP status.
    REFUSAL = "refusal"
    #: A ``b2b-dlq-code`` the ICC or the broker gives a dead letter, and no error's code.
    DEAD_LETTER = "dead-letter"
    #: The code of an error class (simulator.vocabulary.errors) that is no refusal.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Cause:
    """One cause of a code, told apart by the reason that came with it (a DLQ reason).

    ``pattern`` is a regular expression searched, ignoring case, in the reason
    text the ICC writes (``b2b-dlq-reason``); the first cause of an entry whose
    pattern matches is the one explained.
    """

    key: str  # a stable sub-key of the code, e.g. ``cert-expired``
    pattern: str
    title: str  # one line: what happened, more precisely than the code's title
    meaning: str
    fix: str


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """A stable code with its texts: English for reports and answers, Swedish for the live view."""

    code: str
    kind: Kind
    title: str  # one line: what happened (explanations, reports)
    meaning: str  # what it means for the chain
    fix: str  # what to do about it
    status: int | None = None  # the HTTP status of a refusal
    answer_title: str = ""  # a refusal's title in its problem answer, if it is not ``title``
    sv: str | None = None  # the Swedish text of the live view; None: it points to the English
    causes: tuple[Cause, ...] = ()  # the causes a reason text tells apart, most specific first

    def __post_init__(self) -> None:
        if (self.status is not None) != (self.kind is Kind.REFUSAL):
            raise ValueError(f"{self.code}: a refusal, and only a refusal, has an HTTP status")

    @property
    def problem_title(self) -> str:
        """The title of the problem answer (RFC 9457) with this code."""
        return self.answer_title or self.title


def table(*entries: CodeEntry) -> dict[str, CodeEntry]:
    """``entries`` keyed by their code, in order; a code given twice is refused."""
    out: dict[str, CodeEntry] = {}
    for entry in entries:
        if entry.code in out:
            raise ValueError(f"the code {entry.code} is in the catalogue twice")
        out[entry.code] = entry
    return out
