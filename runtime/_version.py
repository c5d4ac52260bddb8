"""The version of prana."""

__version__ = "0.1.0"
