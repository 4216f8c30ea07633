"""TGFlow desktop program (PyQt6)."""

__version__ = "0.1.0"
