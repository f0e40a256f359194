"""The HTML pieces every part of the report is built from: elements, cells, times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree
from lxml.html import builder

__all__ = [
    "css_class",
    "duration",
    "el",
    "msg_link",
    "num_cell",
    "utc_time",
    "verdict_cell",
]

_MAKER: Any = builder.E  # lxml.html's ElementMaker (untyped)
#: Characters of a message id shown in a table (the rest is in its title).
SHORT_ID = 13


def el(tag: str, *children: Any, **attrs: str) -> etree._Element:
    """An HTML element: strings become (escaped) text, dicts attributes, elements children."""
    made: etree._Element = _MAKER(tag, *children, **attrs)
    return made


def css_class(name: str) -> dict[str, str]:
    """The attributes of an element of CSS class ``name``."""
    return {"class": name}


def msg_link(href: str, message_id: str, target: str | None = None) -> etree._Element:
    """A message id, shortened, that opens the message's page ``href`` (in frame ``target``).

    The full id is in the link's title and ``data-msg`` (and on the message's page).
    """
    short = message_id if len(message_id) <= SHORT_ID else message_id[: SHORT_ID - 1] + "…"
    attrs = {"class": "msg", "href": href, "title": message_id, "data-msg": message_id}
    if target:
        attrs["target"] = target
    return el("a", short, **attrs)


def verdict_cell(ok: bool) -> etree._Element:
    """A table cell saying pass or FAIL."""
    return el("td", "pass" if ok else "FAIL", css_class("pass" if ok else "fail"))


def num_cell(v: int | None) -> etree._Element:
    """A right-aligned table cell of a number (empty for None)."""
    return el("td", "" if v is None else str(v), css_class("num"))


def duration(v: int | None) -> str:
    """``v`` ms as ms, or as seconds from 10 s on; a dash for None."""
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if abs(v) >= 10_000 else f"{v} ms"


def utc_time(ms: int) -> str:
    """Epoch ``ms`` as a UTC date and time to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
