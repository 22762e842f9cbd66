"""scheduling stage."""
