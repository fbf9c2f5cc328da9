"""emer: pipelines."""
