"""ka_producer."""
