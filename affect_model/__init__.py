"""emer: affect_model."""
