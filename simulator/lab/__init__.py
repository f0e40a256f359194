"""The lab equipment: the broker launcher and network, the test CA, ports, child processes."""
