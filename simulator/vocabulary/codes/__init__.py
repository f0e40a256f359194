"""The catalogue of codes: every stable code the project gives, with its texts, in one place.

Each code is a named constant, defined once, in the module of its kind:

* :mod:`simulator.vocabulary.codes.refusals`: problem codes a receiver answers
  with (RFC 9457), each with its HTTP status;
* :mod:`simulator.vocabulary.codes.dead_letters`: the ICC's and the broker's
  ``b2b-dlq-code`` values;
* :mod:`simulator.vocabulary.codes.errors`: the codes of the project's own
  errors (simulator.vocabulary.errors).

Beside each constant is its :class:`CodeEntry`: an English title, what it
means and how to fix it (reports, JUnit, explanations), the title of a
refusal's answer, and the Swedish text of the live view.  Import a code by
its constant (``from simulator.vocabulary.codes.refusals import CURSOR_INVALID``),
never as a string; add an entry when you add a code, and never rename one.
"""

from __future__ import annotations

from simulator.vocabulary.codes.dead_letters import DEAD_LETTERS
from simulator.vocabulary.codes.errors import ERRORS
from simulator.vocabulary.codes.model import CodeEntry, Kind, table
from simulator.vocabulary.codes.refusals import REFUSALS

__all__ = ["CATALOGUE", "CodeEntry", "Kind", "entry_for"]

#: Every code → its entry: the refusals, then the dead-letter codes, then the errors.
CATALOGUE: dict[str, CodeEntry] = table(
    *REFUSALS.values(), *DEAD_LETTERS.values(), *ERRORS.values()
)


def entry_for(code: str) -> CodeEntry | None:
    """The catalogue's entry of ``code`` (None if it is not a code of the project)."""
    return CATALOGUE.get(code)
