"""emer: affect_model/model."""
