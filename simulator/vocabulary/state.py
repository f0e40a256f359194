"""Where the simulator keeps its state on disk.

One state directory (default ``.b2bsim/``, or ``$B2BSIM_STATE``, or
``--state DIR``) holds the generated broker, the test PKI, the supplier
registry and the files of each run.  The layout is documented in
``docs/files.md``; components find each other's files only through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = ".b2bsim"
STATE_ENV = "B2BSIM_STATE"


@dataclass(frozen=True)
class StateDir:
    """Paths inside one state directory.  Nothing is created until asked."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> StateDir:
        """``--state`` if given, else ``$B2BSIM_STATE``, else ``./.b2bsim``."""
        chosen = explicit or os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR
        return cls(Path(chosen).absolute())

    # --- broker -------------------------------------------------------------
    @property
    def broker(self) -> Path:
        return self.root / "broker"

    # --- test PKI -----------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.pki / "ca.key"

    @property
    def icc_cert(self) -> Path:
        return self.pki / "icc.pem"

    @property
    def icc_key(self) -> Path:
        return self.pki / "icc.key"

    def supplier_cert(self, org_number: str) -> Path:
        return self.pki / "suppliers" / f"{org_number}.pem"

    def supplier_key(self, org_number: str) -> Path:
        return self.pki / "suppliers" / f"{org_number}.key"

    # --- registry and runs --------------------------------------------------
    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def ensure(self) -> StateDir:
        """Create the root directory (mode 0700: it holds private keys)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self
