"""Synthetic demo data for `reporter init DIR --sample`."""
