"""The kits: the benchmark, the conformance kit, DLQ tools and the pytest plugin."""
