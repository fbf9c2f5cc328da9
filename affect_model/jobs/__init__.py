"""emer: affect_model/jobs."""
