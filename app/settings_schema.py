"""The desktop settings schema: every key of ``settings.ini``, declared once.

Each key is one field of a section dataclass, declared with :func:`setting`: its name, default,
parser, the help written above it in ``settings.ini.example`` and the kind of box the Settings
panel gives it (qutebrowser's ``configdata.yml`` in Python). Everything else is derived from it:
the example file (:func:`example_text`, written by ``scripts/settings_example.py`` and checked by
``tests/app/test_config.py``), the comments of a key the panel adds to a file, the panel's fields
(``app/viewmodels/settings.py``), and the defaults of ``Pacing`` and ``FloodPolicy``.

Plain dataclasses, not pydantic: the settings are validated before the window is shown, and
importing pydantic and building these models took about 0.1 s of that (docs/desktop.md).
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar, cast

from agent.config_checks import InsecureApiUrl, InvalidPin, check_api_url, validate_pin
from app.catalog import N_, Explained

_T = TypeVar("_T")
_TRUE_FALSE: Final = configparser.ConfigParser.BOOLEAN_STATES


class Kind:
    """The box the Settings panel shows for a key."""

    TEXT: Final = "text"
    NUMBER: Final = "number"
    BOOL: Final = "bool"
    #: Shown masked, never in a repr (the Telegram api_hash).
    SECRET: Final = "secret"
    LANGUAGE: Final = "language"


# --- value parsers ------------------------------------------------------------------------------
# Each takes the file's string (or an already typed value) and raises InvalidValue with the reason
# a user reads (a translation key: the window shows it in its language, the CLI in English).


class InvalidValue(Explained, ValueError):
    """A value a key cannot take; ``why`` says why in any language."""


_Parser = Callable[[object], Any]


def _required_text(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise InvalidValue(N_("settings.reason.required"))
    return text


def _int_between(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise InvalidValue(
                N_("settings.reason.whole_number"), low=low, high=high, got=repr(value)
            )
        if isinstance(value, int):
            number = value
        else:
            text = _required_text(value)
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                raise InvalidValue(
                    N_("settings.reason.whole_number"), low=low, high=high, got=repr(text)
                )
            number = int(text)
        if not low <= number <= high:
            raise InvalidValue(N_("settings.reason.range"), low=low, high=high, got=number)
        return number

    return parse


def _seconds_up_to(high: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        if isinstance(value, bool):
            raise InvalidValue(N_("settings.reason.seconds"), high=f"{high:g}", got=repr(value))
        if isinstance(value, int | float):
            number = float(value)
        else:
            text = _required_text(value)
            if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", text):
                key = (
                    N_("settings.reason.seconds_comma")
                    if "," in text
                    else N_("settings.reason.seconds")
                )
                raise InvalidValue(key, high=f"{high:g}", got=repr(text))
            number = float(text)
        if not math.isfinite(number) or not 0 <= number <= high:
            raise InvalidValue(
                N_("settings.reason.seconds_range"), high=f"{high:g}", got=f"{number:g}"
            )
        return number

    return parse


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = _required_text(value)
    try:
        return _TRUE_FALSE[text.lower()]
    except KeyError:
        raise InvalidValue(N_("settings.reason.bool"), got=repr(text)) from None


def _parse_api_url(value: object) -> str:
    text = _required_text(value)
    try:
        return check_api_url(text)
    except InsecureApiUrl:
        raise InvalidValue(N_("settings.reason.api_url"), got=repr(text)) from None


def _parse_pins(value: object) -> tuple[str, ...]:
    items: Iterable[object]
    if isinstance(value, str):
        items = re.split(r"[,\s]+", value)
    elif isinstance(value, Iterable):
        items = value
    else:
        raise InvalidValue(N_("settings.reason.pins"))
    pins: list[str] = []
    bad: list[str] = []
    for item in items:
        pin = str(item).strip()
        if not pin or pin in pins:
            continue
        try:
            pins.append(validate_pin(pin))
        except InvalidPin:
            bad.append(repr(pin[:60]))
    if bad:
        raise InvalidValue(N_("settings.reason.bad_pins"), pins=", ".join(bad))
    return tuple(pins)


_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _parse_install_domain(value: object) -> str:
    text = "" if value is None else str(value).strip().lower().rstrip(".")
    if text and not _HOST_NAME.fullmatch(text):
        raise InvalidValue(N_("settings.reason.install_domain"), got=repr(text[:80]))
    return text


def _parse_api_id(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if not text:
            return None
        if not text.isascii() or not text.isdigit():
            raise InvalidValue(N_("settings.reason.api_id"), got=repr(text))
        number = int(text)
    if not 1 <= number <= 2**31 - 1:
        raise InvalidValue(N_("settings.reason.api_id_range"), got=number)
    return number


def _parse_api_hash(value: object) -> str:
    text = "" if value is None else str(value).strip()
    # The hash is a credential of the user's Telegram application: never echoed back.
    if text and not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise InvalidValue(N_("settings.reason.api_hash"), length=len(text))
    return text.lower()


Language = Literal["ru", "en"]


def _parse_language(value: object) -> Language:
    text = _required_text(value).lower()
    if text not in ("ru", "en"):
        raise InvalidValue(N_("settings.reason.language"), got=repr(text))
    return cast(Language, text)


# --- rules across two keys ----------------------------------------------------------------------

#: A rule across two keys of a section: ``(other key, check(value, other value))``.
_Rule = tuple[str, Callable[[Any, Any], None]]


def _api_hash_with_api_id(api_hash: str, api_id: int | None) -> None:
    if api_id is None and api_hash:
        raise InvalidValue(N_("settings.reason.api_hash_without_id"))
    if api_id is not None and not api_hash:
        raise InvalidValue(N_("settings.reason.api_id_without_hash"))


def _max_delay_not_below_min(max_delay: float, min_delay: float) -> None:
    if max_delay < min_delay:
        raise InvalidValue(
            N_("settings.reason.max_below_min"), max=f"{max_delay:g}", min=f"{min_delay:g}"
        )


# --- the declaration ----------------------------------------------------------------------------

_META: Final = "tgflow.setting"


@dataclass(frozen=True, slots=True)
class _Meta:
    parse: _Parser
    help: str
    kind: str
    live: bool


def setting(
    default: _T,
    parse: Callable[[object], _T],
    *,
    help: str,
    kind: str = Kind.TEXT,
    live: bool = False,
) -> _T:
    """Declare a key of a section: its default, parser, example help and panel box.

    ``live`` keys take effect at once when saved from the panel; the others at the next start.
    """
    meta = _Meta(parse, help, kind, live)
    # Typed as the value so that the dataclass field keeps its type for mypy.
    return cast(_T, field(default=default, repr=kind != Kind.SECRET, metadata={_META: meta}))


@dataclass(frozen=True, slots=True)
class Section:
    """A section of ``settings.ini``: a frozen dataclass whose fields are its keys, in order."""

    #: Rules across keys, by the key their ValueError is reported on.
    RULES: ClassVar[Mapping[str, _Rule]] = {}


@dataclass(frozen=True, slots=True)
class LicenseSettings(Section):
    """``[license]``: which backend to ask and which signing keys to trust."""

    api_base_url: str = setting(
        "http://127.0.0.1:8000",
        _parse_api_url,
        help="Base URL of the licensing backend. Plain http:// is accepted only for loopback "
        "hosts.",
    )
    #: The pins, in the order given, duplicates dropped. Empty is allowed only in demo mode
    #: (:func:`app.config.check_live_settings`).
    jwt_public_key_fingerprint: tuple[str, ...] = setting(
        (),
        _parse_pins,
        help="Pins of the backend's signing keys: sha256/ + base64url(SHA-256 of the key's DER "
        "SubjectPublicKeyInfo), comma separated. `tgflow-server keys pins` prints them. "
        "Tokens signed by any other key are refused, even if the backend publishes it.",
    )
    install_domain: str = setting(
        "",
        _parse_install_domain,
        help="This installation's domain, checked against a license file's domain (a host name, "
        "or *.example.com for any subdomain). Empty: this computer's fully qualified host name.",
    )


@dataclass(frozen=True, slots=True)
class FloodSettings(Section):
    """``[flood]``: when an account cools down and when it is excluded."""

    max_consecutive_errors: int = setting(
        3,
        _int_between(1, 100),
        help="Errors in a row (PeerFlood, timeouts) after which an account is Excluded until "
        "restored.",
        kind=Kind.NUMBER,
    )
    cooldown_sec: int = setting(
        300,
        _int_between(1, 86_400),
        help="First cooldown after an error, in seconds; repeated errors double it.",
        kind=Kind.NUMBER,
    )


@dataclass(frozen=True, slots=True)
class AntiSpamSettings(Section):
    """``[anti_spam]``: the program's own pacing on top of Telegram's FloodWait."""

    enabled: bool = setting(
        True,
        _parse_bool,
        help="false: only Telegram's own FloodWait is honoured (exactly the seconds it asks).",
        kind=Kind.BOOL,
    )


@dataclass(frozen=True, slots=True)
class TelegramSettings(Section):
    """``[telegram]``: the user's application id and hash from my.telegram.org (both or none)."""

    RULES: ClassVar[Mapping[str, _Rule]] = {"api_hash": ("api_id", _api_hash_with_api_id)}

    api_id: int | None = setting(
        None, _parse_api_id, help="Your own application id and hash from my.telegram.org."
    )
    api_hash: str = setting("", _parse_api_hash, help="", kind=Kind.SECRET)


@dataclass(frozen=True, slots=True)
class BroadcastSettings(Section):
    """``[broadcast]``: the pause between two messages of one account, and the batch size."""

    RULES: ClassVar[Mapping[str, _Rule]] = {
        "max_delay_sec": ("min_delay_sec", _max_delay_not_below_min)
    }

    min_delay_sec: float = setting(
        3.0,
        _seconds_up_to(3600),
        help="Pause between two messages from one account, in seconds (minimum and maximum; "
        "a random pause in between is used).",
        kind=Kind.NUMBER,
    )
    max_delay_sec: float = setting(7.0, _seconds_up_to(3600), help="", kind=Kind.NUMBER)
    batch_size: int = setting(
        50,
        _int_between(1, 1000),
        help="Messages reserved from the quota per batch.",
        kind=Kind.NUMBER,
    )


@dataclass(frozen=True, slots=True)
class TelemetrySettings(Section):
    """``[telemetry]``: anonymous usage events to the backend (off unless the user turns it on)."""

    enabled: bool = setting(
        False,
        _parse_bool,
        help="Anonymous usage events to the backend (no recipients, no message text). "
        "Off by default.",
        kind=Kind.BOOL,
    )


@dataclass(frozen=True, slots=True)
class UiSettings(Section):
    """``[ui]``: the window's language."""

    language: Language = setting(
        "ru",
        _parse_language,
        help="Language of the window: ru (Russian) or en (English).",
        kind=Kind.LANGUAGE,
        live=True,
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``settings.ini`` configures; ``source`` is the file, ``None`` for defaults."""

    license: LicenseSettings = field(default_factory=LicenseSettings)
    flood: FloodSettings = field(default_factory=FloodSettings)
    anti_spam: AntiSpamSettings = field(default_factory=AntiSpamSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    broadcast: BroadcastSettings = field(default_factory=BroadcastSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    ui: UiSettings = field(default_factory=UiSettings)
    source: Path | None = None


#: Each section's model, in the order of ``settings.ini.example``.
SECTIONS: Final[Mapping[str, type[Section]]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Settings)
    if f.name != "source"
}

#: The defaults, for code that needs one section's (``DEFAULTS.broadcast.batch_size``).
DEFAULTS: Final = Settings()


# --- what is derived from it --------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One key as the schema declares it (a read-only view of a field of a section)."""

    section: str
    key: str
    default: object
    parse: _Parser
    #: The comment above the key in the example file; empty: it shares the previous key's.
    help: str
    kind: str
    live: bool

    @property
    def id(self) -> tuple[str, str]:
        return (self.section, self.key)


def section_keys(section: type[Section]) -> tuple[str, ...]:
    """The keys of ``section`` (a class of :data:`SECTIONS`), in the order of the example."""
    return tuple(f.name for f in dataclasses.fields(section))


def section_options(name: str) -> tuple[Option, ...]:
    """The keys of the section called ``name``, in order."""
    options = []
    for f in dataclasses.fields(SECTIONS[name]):
        meta: _Meta = f.metadata[_META]
        options.append(Option(name, f.name, f.default, meta.parse, meta.help, meta.kind, meta.live))
    return tuple(options)


def options() -> Iterator[Option]:
    """Every key of every section, in the example file's order."""
    for name in SECTIONS:
        yield from section_options(name)


def format_value(value: object) -> str:
    """``value`` as settings.ini (and the Settings panel) writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)


_HEADER: Final = (
    "TGFlow desktop settings. Copy to settings.ini (beside the program, or in the user config "
    "dir, or pass --config PATH). Every key is listed here with its default; an unknown key or "
    "a bad value is reported with the file, the key and the reason, and the program does not "
    "start. This file is generated from app/settings_schema.py (scripts/settings_example.py)."
)
_WIDTH: Final = 99


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent="; ", subsequent_indent="; ")


def help_comments(section: str, key: str) -> list[str]:
    """The comment lines above ``key`` in the example (empty when it shares the previous's)."""
    for option in section_options(section):
        if option.key == key:
            return _comment(option.help) if option.help else []
    return []


def _line(option: Option) -> str:
    return f"{option.key} = {format_value(option.default)}".rstrip()


def example_text() -> str:
    """The text of ``settings.ini.example``: every key with its help and default."""
    lines = _comment(_HEADER)
    for name in SECTIONS:
        lines += ["", f"[{name}]"]
        for option in section_options(name):
            lines += [*help_comments(name, option.key), _line(option)]
    return "\n".join(lines) + "\n"


def section_parsers(model: type[Section]) -> dict[str, _Parser]:
    """Each key of the section class ``model`` and its parser, in order."""
    return {f.name: f.metadata[_META].parse for f in dataclasses.fields(model)}
