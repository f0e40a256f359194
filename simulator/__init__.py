"""The AF B2B chain simulator, in layers (docs/architecture.md).

- :mod:`simulator.vocabulary`: what every component shares (envelope, messages,
  identifiers, signing, TLS, registry, errors…); the only part of this package
  that ``ka_producer``, ``icc_bridge`` and ``supplier_stub`` may import.
- :mod:`simulator.lab`: the lab equipment (broker launcher, test CA, ports, processes).
- :mod:`simulator.runs`: running scenarios (model, chain, runner, reconciliation).
- :mod:`simulator.views`: what people look at (timeline, report, JUnit, live view).
- :mod:`simulator.kits`: the kits (bench, conformance kit, DLQ tools, pytest plugin).
- :mod:`simulator.commands` and :mod:`simulator.cli`: the ``b2bsim`` command, on top.

Each layer imports only the layers below it; ``make test`` holds the rule.
"""
