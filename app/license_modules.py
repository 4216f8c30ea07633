"""Modules of a license file that change what the desktop offers, and the installation's domain
(docs/desktop.md, "License files"). Light, so the window and the demo can use them without the
license stack."""

from __future__ import annotations

import socket
from typing import Final

#: Enables the Marketplace tab.
MODULE_MARKETPLACE: Final = "marketplace"
#: Allows more than one Telegram account.
MODULE_MULTI_ACCOUNT: Final = "multi_account"


def install_domain(configured: str) -> str:
    """The domain a license file must name: ``[license] install_domain``, else this computer's
    fully qualified host name (a license for ``*.corp.example.com`` covers every machine of
    that DNS domain)."""
    return configured or socket.getfqdn().lower().rstrip(".")
