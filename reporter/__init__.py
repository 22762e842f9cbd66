"""reporter: scheduled key-account relationship scorecards."""

__version__ = "0.1.0"
