"""The package version, in one place (the runtime reports it too)."""

__version__ = "0.1.0"
