"""emer: cluster."""
