"""``b2bsim plan evidence``: the signed evidence pack for the decision meeting.

A zip (docs/plan.md), self-contained:

- ``manifest.json``: tool and rule-set versions, the seeds, the endpoint URL,
  the supplier's (pinned) and the ICC's certificate fingerprints, the first
  start and last end time, each case's last verdict (``never run`` when no run
  had it: a pack claims only what was run), the checklist, and every other
  file of the pack with its SHA-256;
- ``manifest.p7s``: a detached CMS SignedData (DER) over ``manifest.json``,
  made by ``cryptography``'s PKCS7SignatureBuilder with the evidence key the AF
  test CA certified (:mod:`simulator.lab.pki_evidence`); its certificate is
  inside, the CA is not (the verifier brings its own);
- ``report.html`` (the dashboard, offline), ``junit.xml`` and ``status.json``
  of the last verdicts, and ``runs/<run-id>/`` for every run of the history
  (each with its run.json, the envelopes sent and answers received per case,
  its JUnit XML and HTML report).

Written to a temporary file beside ``--out`` and renamed: nothing half-written.
:mod:`simulator.kits.evidence_verify` checks a pack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from simulator.kits.plan_history import PlanStatus, read_runs, status_of
from simulator.kits.plan_run import rule_set_versions, tool_version
from simulator.lab.pki_evidence import EvidenceSigner, evidence_signer
from simulator.runs.plan_file import Plan
from simulator.views.plan_views import plan_html, plan_junit
from simulator.vocabulary.certs import cert_sha256
from simulator.vocabulary.errors import PlanError
from simulator.vocabulary.state import StateDir

__all__ = ["MANIFEST", "SIGNATURE", "build_manifest", "sign_manifest", "write_evidence"]

MANIFEST, SIGNATURE = "manifest.json", "manifest.p7s"
KIND = "b2bsim-evidence"


def sign_manifest(data: bytes, signer: EvidenceSigner) -> bytes:
    """A detached CMS SignedData (DER) over ``data``, with the signer's certificate."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(signer.cert, signer.key, hashes.SHA256())
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )


def _pack_files(plan: Plan, status: PlanStatus) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for run in status.runs:
        folder = plan.runs_dir / str(run["run_id"])
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[f"runs/{folder.name}/{path.relative_to(folder).as_posix()}"] = (
                    path.read_bytes()
                )
    doc = status.to_json()
    files["status.json"] = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    files["report.html"] = plan_html(doc).encode()
    files["junit.xml"] = plan_junit(_last_verdicts_run(plan, status))
    return files


def _last_verdicts_run(plan: Plan, status: PlanStatus) -> dict[str, Any]:
    """The last verdicts, shaped as a run for the JUnit writer."""
    first = min((str(r.get("started_at")) for r in status.runs), default="")
    return {
        "run_id": "last-verdicts",
        "seed": ",".join(sorted({str(r.get("seed")) for r in status.runs})),
        "started_at": first,
        "tool_version": tool_version(),
        "supplier": {"org_number": plan.org_number},
        "endpoint": {"url": plan.url},
        "cases": [
            {"id": c.case.id, "kind": c.case.kind, "verdict": c.verdict, "reason": c.reason}
            for c in status.cases
        ],
    }


def build_manifest(
    plan: Plan, status: PlanStatus, files: dict[str, bytes], state: StateDir, signer: EvidenceSigner
) -> dict[str, Any]:
    runs = status.runs
    pins = [r["endpoint"].get("cert_sha256") for r in runs if r.get("endpoint")]
    return {
        "kind": KIND,
        "version": 1,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tool_version": tool_version(),
        "rule_sets": rule_set_versions(),
        "supplier": {"org_number": plan.org_number, "name": plan.name},
        "endpoint": {"url": plan.url, "mode": plan.mode, "readback": plan.readback},
        "supplier_cert_sha256": pins[-1] if pins else plan.cert_sha256,
        "icc_cert_sha256": cert_sha256(state.icc_cert) if state.icc_cert.is_file() else None,
        "evidence_cert_sha256": cert_sha256(signer.cert),
        "ca_cert_sha256": cert_sha256(signer.ca),
        "seeds": sorted({r["seed"] for r in runs}),
        "started_at": min((str(r["started_at"]) for r in runs), default=None),
        "finished_at": max((str(r["finished_at"]) for r in runs), default=None),
        "runs": [r["run_id"] for r in runs],
        "cases": [c.to_json() for c in status.cases],
        "checklist": [s.to_json() for s in status.steps],
        "ready": status.ready,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }


def write_evidence(state: StateDir, plan: Plan, out: Path) -> dict[str, Any]:
    """Write the pack to ``out``; its manifest."""
    status = status_of(plan, read_runs(plan))
    signer = evidence_signer(state)
    files = _pack_files(plan, status)
    manifest = build_manifest(plan, status, files, state, signer)
    manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    signature = sign_manifest(manifest_bytes, signer)
    tmp = ""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as pack:
            pack.writestr(MANIFEST, manifest_bytes)
            pack.writestr(SIGNATURE, signature)
            for name, data in sorted(files.items()):
                pack.writestr(name, data)
        os.replace(tmp, out)
    except OSError as exc:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise PlanError(
            f"cannot write {out}: {exc.strerror}", hint="choose a writable --out"
        ) from None
    return manifest
