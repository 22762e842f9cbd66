"""The compute benchmark: the full scorecard of one month against one scan of every source table."""
