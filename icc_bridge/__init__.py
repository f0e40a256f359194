"""icc_bridge."""
