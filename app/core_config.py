"""The core's configuration, in a module light enough to import before the window shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from .antispam import FloodPolicy


@dataclass(frozen=True)
class Pacing:
    """``[broadcast]`` of settings.ini."""

    min_delay_sec: float = 3.0
    max_delay_sec: float = 7.0
    batch_size: int = 50


@dataclass(frozen=True)
class CoreConfig:
    """What the core needs from settings.ini."""

    api_base_url: str
    pins: tuple[str, ...]
    policy: FloodPolicy = field(default_factory=FloodPolicy)
    pacing: Pacing = field(default_factory=Pacing)
    telemetry: bool = False
