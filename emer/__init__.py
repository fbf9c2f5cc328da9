"""emer: emer."""
