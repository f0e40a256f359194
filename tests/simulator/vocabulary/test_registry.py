"""The supplier registry file: round trip and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.vocabulary.errors import RegistryError, UnknownSupplierError
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.registry import (
    DeliveryMode,
    Registry,
    SupplierEntry,
    register_supplier,
)

ORG = org_number_from_index(1)
SHA = "ab" * 32


def entry(**overrides: str) -> SupplierEntry:
    fields = {
        "org_number": ORG,
        "name": "A AB",
        "url": "https://127.0.0.1:9443/b2b/envelopes",
        "cert_sha256": SHA,
    } | overrides
    return SupplierEntry(**fields)  # type: ignore[arg-type]


class TestRegistry:
    def test_round_trip(self, tmp_path: Path) -> None:
        """What is saved loads back equal, delivery mode included."""
        path = tmp_path / "registry.json"
        Registry([entry()]).save(path)
        loaded = Registry.load(path)
        assert list(loaded) == [entry()]
        assert loaded.lookup(ORG).delivery_mode is DeliveryMode.PUSH

    def test_unknown_supplier(self) -> None:
        """Looking up an unregistered number names it and says what to do."""
        with pytest.raises(UnknownSupplierError, match="5560360793"):
            Registry([entry()]).lookup("5560360793")

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("org_number", "5560360794", "not a valid organisation number"),
            ("url", "http://127.0.0.1/x", "not an https URL"),
            ("cert_sha256", "AB" * 32, "64 lower-case hex"),
        ],
    )
    def test_bad_entry(self, field: str, value: str, message: str) -> None:
        """Each malformed field is refused with its own message."""
        with pytest.raises(RegistryError, match=message):
            entry(**{field: value})

    def test_duplicate_supplier(self) -> None:
        """One organisation number may appear only once."""
        with pytest.raises(RegistryError, match="listed twice"):
            Registry([entry(), entry()])

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("{not json", "not valid JSON"),
            ('{"version": 2, "suppliers": []}', '"version": 1'),
            ('{"version": 1, "suppliers": {}}', "must be a list"),
            ('{"version": 1, "suppliers": [{"org_number": "x"}]}', r"suppliers\[0\]"),
        ],
    )
    def test_malformed_file(self, tmp_path: Path, content: str, message: str) -> None:
        """A malformed registry file names the file and the problem."""
        path = tmp_path / "registry.json"
        path.write_text(content)
        with pytest.raises(RegistryError, match=message):
            Registry.load(path)

    def test_bad_delivery_mode(self, tmp_path: Path) -> None:
        """A delivery mode other than push or pull is refused."""
        path = tmp_path / "registry.json"
        raw = Registry([entry()]).to_json()
        raw["suppliers"][0]["delivery_mode"] = "carrier-pigeon"
        path.write_text(json.dumps(raw))
        with pytest.raises(RegistryError, match="carrier-pigeon"):
            Registry.load(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing registry says how to make one."""
        with pytest.raises(RegistryError, match="pki init"):
            Registry.load(tmp_path / "none.json")


class TestRegisterSupplier:
    """register_supplier: what `pki issue --csr` does to the registry."""

    OTHER = org_number_from_index(2)

    def test_updates_the_fingerprint_and_keeps_the_url_and_order(self, tmp_path: Path) -> None:
        path = tmp_path / "registry.json"
        Registry([entry(), entry(org_number=self.OTHER, url="https://h:1/b2b/envelopes")]).save(
            path
        )
        assert register_supplier(path, ORG, "ignored", "cd" * 32, None) == "updated"
        loaded = list(Registry.load(path))
        assert [e.org_number for e in loaded] == [ORG, self.OTHER]
        assert loaded[0] == entry(cert_sha256="cd" * 32)  # name and URL kept

    def test_a_new_url_moves_it(self, tmp_path: Path) -> None:
        path = tmp_path / "registry.json"
        Registry([entry()]).save(path)
        url = "https://127.0.0.1:9500/b2b/envelopes"
        assert register_supplier(path, ORG, "A AB", "cd" * 32, url) == "moved"
        assert Registry.load(path).lookup(ORG).url == url

    def test_adds_a_supplier_with_its_url(self, tmp_path: Path) -> None:
        path = tmp_path / "registry.json"
        Registry([entry()]).save(path)
        url = "https://127.0.0.1:9500/b2b/envelopes"
        assert register_supplier(path, self.OTHER, "B AB", "cd" * 32, url) == "added"
        added = Registry.load(path).lookup(self.OTHER)
        assert (added.name, added.url, added.cert_sha256) == ("B AB", url, "cd" * 32)
        assert added.delivery_mode is DeliveryMode.PUSH

    def test_creates_a_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "registry.json"
        url = "https://127.0.0.1:9500/b2b/envelopes"
        assert register_supplier(path, ORG, "A AB", SHA, url) == "added"
        assert list(Registry.load(path)) == [entry(url=url)]

    def test_a_new_supplier_without_url_is_refused_and_nothing_written(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "registry.json"
        Registry([entry()]).save(path)
        before = path.read_bytes()
        with pytest.raises(RegistryError, match=f"{self.OTHER} is not in .*--url"):
            register_supplier(path, self.OTHER, "B AB", SHA, None)
        assert path.read_bytes() == before

    def test_a_bad_url_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "registry.json"
        with pytest.raises(RegistryError, match="not an https URL"):
            register_supplier(path, ORG, "A AB", SHA, "http://127.0.0.1:9500/")
        assert not path.exists()
