"""TGFlow reference backend (FastAPI)."""

__version__ = "0.1.0"
