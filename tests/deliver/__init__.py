"""Tests of the deliver stage: email, ledger, archive."""
