"""The library version (one place: the package, run.json and exported model cards read it here)."""

__version__ = "0.1.0"
