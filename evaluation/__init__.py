"""emer: evaluation."""
