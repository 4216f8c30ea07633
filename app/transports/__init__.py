"""Telegram transports: kurigram and the simulated one."""
