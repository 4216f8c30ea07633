"""Modules of a license file that change what the desktop offers (docs/desktop.md, "License
files"). A module of its own so the window can name them without the license stack."""

from __future__ import annotations

from typing import Final

#: Enables the Marketplace tab.
MODULE_MARKETPLACE: Final = "marketplace"
#: Allows more than one Telegram account.
MODULE_MULTI_ACCOUNT: Final = "multi_account"
