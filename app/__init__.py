"""TGFlow desktop program (PyQt6)."""
