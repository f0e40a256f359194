"""Validate each received document against the official rules, off the event loop.

Saxon and the XSD run on one dedicated thread (compiled once per process), so
a slow document never stalls the other connections.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from simulator.vocabulary.validation import DocumentValidator, resolve_rules_dir
from supplier_stub.app import DocumentCheck


def document_check_for(rules: str | None, *, validate: bool = True) -> DocumentCheck | None:
    """A check using ``rules``, else ``$B2BSIM_RULES_DIR``, else the rule sets shipped with
    b2bsim; None if ``validate`` is False (``--no-validate``).
    """
    if not validate:
        return None
    validator = DocumentValidator(resolve_rules_dir(rules))
    # Compile the XSDs and rule sets now (a few seconds), before the stub says it is
    # ready, so that the first envelopes do not wait for it.
    validator.warm_up()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stub-validate")

    async def check(document: bytes) -> list[str]:
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(executor, validator.validate, document)
        return sorted({f.rule_id for f in report.failures if f.flag != "warning"})

    return check
