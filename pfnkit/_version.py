"""The package version, in a module that imports nothing (the card and the build read it)."""

__version__ = "0.1.0"
