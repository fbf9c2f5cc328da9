"""emer: emer/commands."""
