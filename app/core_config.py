"""The core's configuration, in a module light enough to import before the window shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from .antispam import FloodPolicy
from .settings_schema import DEFAULTS, BroadcastSettings


@dataclass(frozen=True)
class Pacing:
    """``[broadcast]`` of settings.ini (defaults from the settings schema)."""

    min_delay_sec: float = DEFAULTS.broadcast.min_delay_sec
    max_delay_sec: float = DEFAULTS.broadcast.max_delay_sec
    batch_size: int = DEFAULTS.broadcast.batch_size

    @classmethod
    def from_settings(cls, broadcast: BroadcastSettings) -> Pacing:
        return cls(broadcast.min_delay_sec, broadcast.max_delay_sec, broadcast.batch_size)


@dataclass(frozen=True)
class CoreConfig:
    """What the core needs from settings.ini."""

    api_base_url: str
    pins: tuple[str, ...]
    policy: FloodPolicy = field(default_factory=FloodPolicy)
    pacing: Pacing = field(default_factory=Pacing)
    #: The pacing is the demo's own (fast, fixed), not settings.ini's [broadcast]: the Broadcast
    #: panel must not send the user to Settings to change it.
    demo_pacing: bool = False
    telemetry: bool = False
    #: ``[license] install_domain``: the domain a license file must name ("" = the host's FQDN).
    install_domain: str = ""
    #: Where points are bought: the demo's fake store (``agent.store_checkout``); ``None``: no
    #: store is integrated with this desktop, and the Points section sells nothing.
    store_checkout_url: str | None = None
