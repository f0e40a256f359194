"""`b2bsim bench`: runs at a small N and writes well-formed JSON (not a timed test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.kits import bench, bench_chain
from simulator.kits.bench_procs import cpu_seconds, machine_facts, peak_rss_mb, summarise
from simulator.runs.chain import ChainSpec
from simulator.vocabulary.state import StateDir


def live_processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (not this one) that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(cmd)
    return found


@pytest.mark.broker
@pytest.mark.integration
class TestBenchRun:
    def test_small_run_writes_well_formed_json(
        self, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """200 messages for 5 suppliers: both measurements, sane figures, nothing left running."""
        out = tmp_path / "bench.json"
        code = main(
            [
                "--state",
                str(state_dir.root),
                "bench",
                "--messages",
                "200",
                "--suppliers",
                "5",
                "--workers",
                "1",
                "--broker",
                broker_url,
                "--json",
                str(out),
            ]
        )
        assert code == 0
        data = json.loads(out.read_text())
        assert data["baseline_msgs_per_s"] > 0
        assert data["chain_msgs_per_s"] > 0
        # The JSON keeps three decimals of the ratio.
        assert data["ratio"] == pytest.approx(
            data["chain_msgs_per_s"] / data["baseline_msgs_per_s"], rel=0.01, abs=0.0005
        )
        assert data["correct"] is True
        assert data["rss_mb"] > 0
        e2e = data["chain"]["latency_ms"]["end_to_end"]
        assert e2e["count"] == 200
        assert 0 <= e2e["p50"] <= e2e["p95"] <= e2e["p99"] <= e2e["max"]
        assert data["p99_ms"] == e2e["p99"]
        for hop in ("ka_to_icc", "icc_consumed_to_delivered", "stub_received_to_loaded"):
            assert data["chain"]["latency_ms"][hop]["count"] == 200
        base = data["baseline"]["latency_ms"]["end_to_end"]
        assert base["count"] == 200
        assert base["p50"] <= base["p99"]
        assert set(data["chain"]["cpu_s_per_1000"]) >= {
            "ka (bench process)",
            "icc-1",
            "supplier-stub",
        }
        assert all(v >= 0 for v in data["chain"]["cpu_s_per_1000"].values())
        assert data["rss_mb"] == max(data["chain"]["rss_mb"].values())
        figures = data["chain"]["figures"]
        assert figures["produced"] == figures["ingested"] == 200
        assert figures["lost"] == figures["double_ingested"] == figures["out_of_order"] == 0
        assert data["machine"]["nproc"] >= 1
        assert live_processes_mentioning(str(state_dir.root)) == []

    def test_network_of_two_brokers(self, state_dir: StateDir, tmp_path: Path) -> None:
        """--brokers 2 starts a network for the bench, one worker per broker, and stops it."""
        out = tmp_path / "bench.json"
        code = main(
            [
                "--state",
                str(state_dir.root),
                "bench",
                "--messages",
                "200",
                "--suppliers",
                "5",
                "--brokers",
                "2",
                "--json",
                str(out),
            ]
        )
        assert code == 0
        data = json.loads(out.read_text())
        assert (data["brokers"], data["workers"]) == (2, 2)
        assert data["correct"] is True
        cpu = data["chain"]["cpu_s_per_1000"]
        assert {"broker-1 (JVM)", "broker-2 (JVM)", "icc-1", "icc-2"} <= set(cpu)
        assert data["chain"]["figures"]["ingested"] == 200
        assert live_processes_mentioning(str(state_dir.root)) == []


class TestBenchOptions:
    @pytest.mark.parametrize(
        "extra",
        [
            ["--messages", "0"],
            ["--messages", "10", "--suppliers", "20"],
            ["--workers", "0"],
            ["--brokers", "2"],  # with --broker: one named broker and a network of two
            ["--brokers", "10"],
        ],
    )
    def test_bad_options_are_usage_errors(
        self, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Impossible options exit 2 with a message, before any broker is touched."""
        code = main(
            ["--state", str(tmp_path / "s"), "bench", "--broker", "stomp://127.0.0.1:1", *extra]
        )
        assert code == 2
        assert "--" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("extra", "says"),
        [
            (["--rate", "0"], "--rate 0 is not positive"),
            (["--rate", "-5"], "--rate -5 is not positive"),
            (["--rate", "nan"], "--rate nan is not positive"),
            (["--rate", "inf"], "--rate inf is not positive"),
            (["--rate", "10", "--duration", "0"], "--duration 0 is not positive"),
            (["--rate", "auto", "--duration", "-1"], "--duration -1 is not positive"),
            (["--duration", "5"], "--duration is the length of a steady phase"),
            (["--rate", "10", "--messages", "500"], "--messages is a burst's"),
            (["--rate", "0.1", "--duration", "5"], "publishes no message"),
        ],
    )
    def test_bad_steady_options_are_one_line_usage_errors(
        self, extra: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rate or duration that is not positive, or --rate beside options it makes
        meaningless: one line, exit 2, before any broker is touched."""
        code = main(
            ["--state", str(tmp_path / "s"), "bench", "--broker", "stomp://127.0.0.1:1", *extra]
        )
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert says in err
        assert "\n" not in err

    def test_a_rate_that_is_no_number_is_refused_by_the_parser(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--rate takes a number or auto, nothing else."""
        with pytest.raises(SystemExit) as info:
            main(["--state", str(tmp_path / "s"), "bench", "--rate", "fast"])
        assert info.value.code == 2
        assert "neither a number of msg/s nor auto" in capsys.readouterr().err

    def test_steady_options_that_make_sense_pass(self, tmp_path: Path) -> None:
        """--rate R alone, with --duration, and --rate auto beside --messages are accepted."""
        state = StateDir(tmp_path)
        for options in (
            bench.BenchOptions(state, messages=None, suppliers=3, rate=20.0),
            bench.BenchOptions(state, messages=None, suppliers=3, rate=0.5, duration=2),
            bench.BenchOptions(state, messages=60, suppliers=3, rate="auto", duration=3),
        ):
            options.check()
        assert bench.BenchOptions(state, None, 3, rate=20.0).burst is False
        assert bench.BenchOptions(state, None, 3, rate="auto").burst is True
        assert bench.BenchOptions(state, None, 3).burst_messages == 20000

    def test_fewer_workers_than_brokers_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A broker without a consuming worker would hold its share: refused before start."""
        code = main(["--state", str(tmp_path / "s"), "bench", "--brokers", "3", "--workers", "2"])
        assert code == 2
        assert "--workers 3" in capsys.readouterr().err


class Captured(Exception):
    """Raised by a fake RunningChain, carrying the spec the bench built."""


class TestBenchChainSpec:
    def test_stub_runs_without_document_rules(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The bench measures the chain: its stub is told --no-validate (validate=False)."""

        def fake_chain(spec: object, *_args: object) -> None:
            raise Captured(spec)

        monkeypatch.setattr(bench, "init_run_suppliers", lambda run_dir, ids: (None, None))
        monkeypatch.setattr(bench, "RunningChain", fake_chain)
        options = bench.BenchOptions(state=StateDir(tmp_path), messages=10, suppliers=1)
        with pytest.raises(Captured) as info:
            bench._run_chain(
                options,
                state=StateDir(tmp_path),
                run_dir=tmp_path,
                url="stomp://127.0.0.1:1",
                worker_urls=(),
                identities=[],
                docs=bench_chain.Documents([], [], []),
                broker_pids={},
                say=lambda _msg: None,
            )
        (spec,) = info.value.args
        assert isinstance(spec, ChainSpec)
        assert spec.validate is False


class TestBenchProcs:
    def test_reads_own_cpu_and_memory(self) -> None:
        """This process has used CPU time and has a resident peak."""
        sum(i * i for i in range(200_000))
        cpu = cpu_seconds(os.getpid())
        rss = peak_rss_mb(os.getpid())
        assert cpu is not None
        assert cpu > 0
        assert rss is not None
        assert rss > 1

    def test_gone_process_reads_none(self) -> None:
        """A pid that does not exist reads as None, not an error."""
        assert cpu_seconds(2**22 + 7) is None
        assert peak_rss_mb(2**22 + 7) is None

    def test_percentiles_are_nearest_rank(self) -> None:
        """p50/p95/p99 of 1..100 are 50, 95 and 99; the maximum is 100."""
        s = summarise(float(v) for v in range(100, 0, -1))
        assert (s.count, s.p50, s.p95, s.p99, s.max) == (100, 50.0, 95.0, 99.0, 100.0)

    def test_empty_latencies_have_no_percentiles(self) -> None:
        """No values: a count of 0 and None everywhere."""
        assert summarise([]).to_json() == {
            "count": 0,
            "p50": None,
            "p95": None,
            "p99": None,
            "max": None,
        }

    def test_machine_facts(self) -> None:
        """The machine is described by cores and Python version."""
        facts = machine_facts()
        assert int(facts["nproc"]) >= 1
        assert str(facts["python"]).startswith("3.")
