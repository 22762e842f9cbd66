"""The render benchmark: 1,000 account reviews and the portfolio scorecard, against a naive baseline."""
