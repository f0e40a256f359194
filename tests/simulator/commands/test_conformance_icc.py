"""``b2bsim conformance --icc``: its command line, and a run against our ICC over a real broker."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.kits.icc_harness_cases import ICC_CASES
from simulator.lab.components import Component
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

SUPPLIER = numbered_suppliers(1)[0]
ORG = SUPPLIER.org_number
NO_BROKER = "stomp://127.0.0.1:1"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("conformance-icc") / "state").ensure()
    init_pki(state, [SUPPLIER])
    return state


def _icc(state: StateDir, *args: str) -> list[str]:
    return ["--state", str(state.root), "conformance", "--icc", *args]


def test_list_names_every_icc_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--icc", "--list"]) == 0
    out = capsys.readouterr().out
    for case in ICC_CASES:
        assert f"{case.id}: " in out
        assert f"docs/conformance.md#{case.id}" in out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--org-number", ORG], "needs --listen"),
        (["--listen", "127.0.0.1:9443"], "needs --org-number"),
        (["--listen", "9443", "--org-number", ORG], "is not HOST:PORT"),
        (["--listen", "10.9.9.9:9443", "--org-number", ORG], "not 10.9.9.9"),
        (["--listen", "127.0.0.1:9443", "--org-number", "5560360793"], "no supplier certificate"),
        (["--listen", "127.0.0.1:9443", "--org-number", ORG, "--case", "nope"], "unknown ICC"),
        (["--listen", "127.0.0.1:9443", "--org-number", ORG], "no STOMP broker answers"),
    ],
)
def test_a_wrong_command_line_is_one_line_and_exit_2(
    state: StateDir, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    assert main(_icc(state, "--broker", NO_BROKER, *args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert said in err[0]


@pytest.mark.broker
@pytest.mark.integration
async def test_a_run_prints_the_registry_entry_and_grades_our_icc(
    state: StateDir, broker_url: str, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    queue = f"/queue/test.conformance-icc.{uuid.uuid4().hex[:8]}"
    url = f"https://127.0.0.1:{port}/b2b/envelopes"
    pin = cert_sha256(state.supplier_cert(ORG))
    registry = tmp_path / "registry.json"
    Registry([SupplierEntry(org_number=ORG, name=SUPPLIER.name, url=url, cert_sha256=pin)]).save(
        registry
    )
    icc_args = ["--broker", broker_url, "--queue", queue, "--registry", str(registry),
                "--request-timeout", "2", "--outbox", str(tmp_path / "outbox.sqlite")]  # fmt: skip
    icc = await Component.start("icc", state.root, icc_args, tmp_path / "icc.log")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulator.cli",
            *_icc(state, "--listen", f"127.0.0.1:{port}", "--org-number", ORG,
                  "--broker", broker_url, "--queue", queue, "--case", "icc-moved",
                  "--case", "icc-order", "--timeout", "5", "--quiet", "1",
                  "--icc-request-timeout", "2", "--json", str(tmp_path / "icc.json")),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await icc.stop()
    assert proc.returncode == 0, (out.decode(), err.decode())
    lines = out.decode().splitlines()
    said = next(line for line in lines if line.startswith("the ICC's registry must hold: "))
    entry = json.loads(said.removeprefix("the ICC's registry must hold: "))
    assert entry == {"org_number": ORG, "url": url, "cert_sha256": pin}
    report = json.loads((tmp_path / "icc.json").read_text())
    assert report["passed"] is True
    assert [c["id"] for c in report["cases"]] == ["icc-moved", "icc-order"]
    assert report["target"] == url
