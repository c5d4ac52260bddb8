"""``python -m prana``: the same as the ``prana`` command."""

from .actors._cli import entry_point

entry_point()
