"""emer: core."""
