"""The supplier registry: organisation number → URL, certificate and delivery mode.

The simulator writes it (``registry.json`` in the state directory; after a
certificate rotation :func:`update_registry_cert`, after issuing from a
supplier's CSR :func:`register_supplier`) and the ICC reads it.  A
real ICC's registry can take its place: the format is in ``docs/files.md``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.vocabulary.errors import RegistryError, UnknownSupplierError
from simulator.vocabulary.identifiers import is_valid_org_number, org_number_hint
from simulator.vocabulary.retry import RetryPolicy

REGISTRY_VERSION = 1
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class DeliveryMode(StrEnum):
    """How the ICC hands envelopes to a supplier."""

    PUSH = "push"  # the ICC POSTs each envelope to the supplier's URL
    PULL = "pull"  # the supplier fetches envelopes from the ICC's outbox


@dataclass(frozen=True, slots=True)
class SupplierEntry:
    """One supplier as the ICC knows it."""

    org_number: str
    name: str
    url: str
    cert_sha256: str  # lower-case hex SHA-256 of the DER certificate the ICC pins
    delivery_mode: DeliveryMode = DeliveryMode.PUSH
    retry: RetryPolicy | None = None  # None: the ICC's default policy

    def __post_init__(self) -> None:
        where = f"supplier {self.org_number!r}"
        if not is_valid_org_number(self.org_number):
            raise RegistryError(
                f"{where}: not a valid organisation number",
                hint=org_number_hint(self.org_number),
            )
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise RegistryError(
                f"{where}: url {self.url!r} is not an https URL",
                hint="the ICC delivers only over HTTPS, e.g. https://127.0.0.1:9443/b2b/envelopes",
            )
        if not _SHA256_HEX.fullmatch(self.cert_sha256):
            raise RegistryError(
                f"{where}: cert_sha256 is not 64 lower-case hex digits",
                hint="use the SHA-256 of the DER certificate, as `b2bsim pki init` prints it",
            )


class Registry:
    """All suppliers, keyed by organisation number."""

    def __init__(self, entries: Iterable[SupplierEntry]) -> None:
        self._by_org: dict[str, SupplierEntry] = {}
        for entry in entries:
            if entry.org_number in self._by_org:
                raise RegistryError(
                    f"supplier {entry.org_number} is listed twice",
                    hint="keep one entry per organisation number",
                )
            self._by_org[entry.org_number] = entry

    def __len__(self) -> int:
        return len(self._by_org)

    def __iter__(self) -> Iterator[SupplierEntry]:
        return iter(self._by_org.values())

    def __contains__(self, org_number: object) -> bool:
        return org_number in self._by_org

    def lookup(self, org_number: str) -> SupplierEntry:
        """The supplier with this organisation number, or UnknownSupplierError."""
        try:
            return self._by_org[org_number]
        except KeyError:
            raise UnknownSupplierError(
                f"no supplier with organisation number {org_number} in the registry",
                hint="add it to the registry (b2bsim pki init --suppliers ...) or fix the number",
            ) from None

    # --- file form ----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        suppliers = []
        for e in self:
            item = asdict(e)
            if e.retry is None:
                del item["retry"]
            suppliers.append(item)
        return {"version": REGISTRY_VERSION, "suppliers": suppliers}

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a registry."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Registry:
        """Read and check a registry file; every problem names the file."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(
                f"no supplier registry at {path}",
                hint="run `b2bsim pki init` (it writes the registry) or pass --registry FILE",
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(
                f"{path}: not valid JSON ({exc})", hint="fix or regenerate it"
            ) from None
        if not isinstance(raw, dict) or raw.get("version") != REGISTRY_VERSION:
            raise RegistryError(
                f'{path}: expected an object with "version": {REGISTRY_VERSION}',
                hint="regenerate it with `b2bsim pki init`",
            )
        suppliers = raw.get("suppliers")
        if not isinstance(suppliers, list):
            raise RegistryError(f'{path}: "suppliers" must be a list', hint="see docs/files.md")
        entries = []
        fields = set(SupplierEntry.__dataclass_fields__)
        for i, item in enumerate(suppliers):
            if (
                not isinstance(item, dict)
                or set(item) - fields
                or not {"org_number", "name", "url", "cert_sha256"} <= set(item)
            ):
                raise RegistryError(
                    f"{path}: suppliers[{i}] must have exactly the keys {sorted(fields)}",
                    hint="delivery_mode (push or pull) and retry are optional",
                )
            try:
                mode = DeliveryMode(item.get("delivery_mode", "push"))
            except ValueError:
                raise RegistryError(
                    f"{path}: suppliers[{i}].delivery_mode {item['delivery_mode']!r} is unknown",
                    hint="use push or pull",
                ) from None
            retry = (
                RetryPolicy.from_json(item["retry"], f"{path}: suppliers[{i}]")
                if "retry" in item
                else None
            )
            try:
                entries.append(
                    SupplierEntry(
                        org_number=str(item["org_number"]),
                        name=str(item["name"]),
                        url=str(item["url"]),
                        cert_sha256=str(item["cert_sha256"]),
                        delivery_mode=mode,
                        retry=retry,
                    )
                )
            except RegistryError as exc:
                raise RegistryError(f"{path}: {exc.message}", hint=exc.hint) from None
        return cls(entries)


def register_supplier(
    registry_path: Path, org_number: str, name: str, sha256: str, url: str | None
) -> str:
    """Add a supplier to a registry file, or set its ``cert_sha256`` (and ``url``), atomically.

    Returns ``"added"``, ``"updated"`` (URL kept when ``url`` is None) or ``"moved"``
    (a new URL).  A supplier not in the registry needs ``url``: RegistryError
    otherwise, and for a malformed file.  A missing file is created.
    """
    registry = Registry.load(registry_path) if registry_path.is_file() else Registry([])
    if org_number in registry:
        old = registry.lookup(org_number)
        new = replace(old, cert_sha256=sha256, url=url or old.url)
        outcome = "updated" if new.url == old.url else "moved"
    elif url is None:
        raise RegistryError(
            f"supplier {org_number} is not in {registry_path}",
            hint="give its endpoint with --url https://HOST:PORT/b2b/envelopes",
        )
    else:
        new = SupplierEntry(org_number=org_number, name=name, url=url, cert_sha256=sha256)
        outcome = "added"
    entries = [new if e.org_number == org_number else e for e in registry]
    if outcome == "added":
        entries.append(new)
    _save(Registry(entries), registry_path)
    return outcome


def _save(registry: Registry, path: Path) -> None:
    try:
        registry.save(path)
    except OSError as exc:
        raise RegistryError(
            f"cannot write {path}: {exc.strerror}", hint="check the state directory's permissions"
        ) from None


def update_registry_cert(registry_path: Path, org_number: str, sha256: str) -> bool:
    """Set ``cert_sha256`` of one supplier in a registry file, atomically.

    Returns False (and writes nothing) if there is no registry file or it
    does not list the supplier; RegistryError if the file is malformed.
    """
    if not registry_path.is_file():
        return False
    registry = Registry.load(registry_path)
    if org_number not in registry:
        return False
    entries = [
        replace(e, cert_sha256=sha256) if e.org_number == org_number else e for e in registry
    ]
    _save(Registry(entries), registry_path)
    return True
