"""emer: affect_model/train."""
