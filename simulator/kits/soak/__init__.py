"""``b2bsim soak``: steady load under a seeded schedule of every fault (docs/reliability.md).

:mod:`.schedule` lays the faults out, :mod:`.chain` runs the components behind fault
proxies, :mod:`.faults` applies each kind, :mod:`.run` runs the whole soak.
"""
