"""Examples built on TGFlow's libraries (not installed with the package)."""
