"""Validating a settings file's text against the model (app/settings_schema.py).

The text is read with :mod:`configparser` in strict mode (a repeated section or key is an error)
without interpolation; a ``[DEFAULT]`` section is not special, and therefore unknown. Every
problem is reported at once, in the file's order.
"""

from __future__ import annotations

import configparser
import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from app.catalog import N_, Explained, Reason
from app.config.problems import SettingsError, SettingsProblem
from app.settings_schema import SECTIONS, Section, Settings, section_keys, section_parsers

# configparser treats the section named by ``default_section`` as defaults for every other
# section; no real header can be this, so ``[DEFAULT]`` is reported as an unknown section.
_NO_DEFAULT_SECTION: Final = "\x00no default section"


_S = TypeVar("_S", bound=Section)


def _parse_section(model: type[_S], raw: Mapping[str, str]) -> tuple[_S, dict[str, Reason]]:
    """The section ``raw`` (known keys only) gives, and the reason for each wrong key.

    The reasons are in the keys' order. A key not given keeps its default; the section returned
    is meaningful only when there is no reason.
    """
    values: dict[str, Any] = {}
    reasons: dict[str, Reason] = {}
    parsers = section_parsers(model)
    for key, parse in parsers.items():
        if key in raw:
            try:
                values[key] = parse(raw[key])
            except ValueError as exc:
                reasons[key] = why(exc)
    section = model(**values)
    for key, (other, check) in model.RULES.items():
        # Applied whenever both keys are good, given or default: a file that sets only
        # min_delay_sec = 10 (above the default maximum) or only api_id is half-configured.
        if key not in reasons and other not in reasons:
            try:
                check(getattr(section, key), getattr(section, other))
            except ValueError as exc:
                reasons[key] = why(exc)
    return section, {key: reasons[key] for key in parsers if key in reasons}


def why(exc: ValueError) -> Reason:
    if isinstance(exc, Explained):
        return exc.why
    return Reason(N_("settings.reason.other"), {"reason": str(exc)})


def unknown(kind: Literal["section", "key"], name: str, known: Iterable[str]) -> Reason:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    # The names are the file's own words: written as in the file, in any language.
    names = [f"[{name}]" for name in known] if kind == "section" else [repr(k) for k in known]
    params: dict[str, object] = {"known": ", ".join(names)}
    if close:
        params["like"] = repr(close[0])
    if kind == "section":
        key = (
            N_("settings.reason.unknown_section_like")
            if close
            else N_("settings.reason.unknown_section")
        )
    else:
        key = N_("settings.reason.unknown_key_like") if close else N_("settings.reason.unknown_key")
    return Reason(key, params)


def syntax_problems(
    error: configparser.Error, source: Path | None, text: str
) -> list[SettingsProblem]:
    lines = text.splitlines()

    def line_text(lineno: int) -> str:
        return repr(lines[lineno - 1].strip()[:80]) if 0 < lineno <= len(lines) else "''"

    if isinstance(error, configparser.DuplicateOptionError):
        return [
            SettingsProblem(
                source,
                error.section,
                error.option,
                Reason(N_("settings.reason.key_twice")),
                error.lineno,
            )
        ]
    if isinstance(error, configparser.DuplicateSectionError):
        return [
            SettingsProblem(
                source,
                error.section,
                None,
                Reason(N_("settings.reason.section_twice")),
                error.lineno,
            )
        ]
    if isinstance(error, configparser.MissingSectionHeaderError):
        reason = Reason(N_("settings.reason.before_header"), {"line": line_text(error.lineno)})
        return [SettingsProblem(source, None, None, reason, error.lineno)]
    if isinstance(error, configparser.ParsingError):
        return [
            SettingsProblem(
                source,
                None,
                None,
                Reason(N_("settings.reason.bad_line"), {"line": line_text(lineno)}),
                lineno,
            )
            for lineno, _ in error.errors
        ]
    return [
        SettingsProblem(
            source, None, None, Reason(N_("settings.reason.unparseable"), {"reason": str(error)})
        )
    ]


def read_sections(text: str, source: Path | None) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, default_section=_NO_DEFAULT_SECTION
    )
    try:
        parser.read_string(text, source=str(source) if source is not None else "<settings>")
    except configparser.Error as exc:
        raise SettingsError(syntax_problems(exc, source, text)) from None
    return {name: dict(parser.items(name, raw=True)) for name in parser.sections()}


def parse_settings(text: str, *, source: Path | None = None) -> Settings:
    """Validate settings-file ``text``; ``source`` names the file in problems and in the result.

    Raises :class:`SettingsError` listing every problem found, in the file's order.
    """
    problems: list[SettingsProblem] = []
    sections: dict[str, Any] = {}
    for section, items in read_sections(text, source).items():
        model = SECTIONS.get(section)
        if model is None:
            problems.append(
                SettingsProblem(source, section, None, unknown("section", section, SECTIONS))
            )
            continue
        keys = section_keys(model)
        known = {key: value for key, value in items.items() if key in keys}
        problems.extend(
            SettingsProblem(source, section, key, unknown("key", key, keys))
            for key in items
            if key not in known
        )
        sections[section], reasons = _parse_section(model, known)
        for key, reason in reasons.items():
            if re.search(r"\s[;#]", known.get(key, "")):
                reason = Reason(N_("settings.reason.inline_comment"), {"reason": reason})
            problems.append(SettingsProblem(source, section, key, reason))
    if problems:
        raise SettingsError(problems)
    return Settings(**sections, source=source)


def check_live_settings(settings: Settings) -> None:
    """Raise :class:`SettingsError` unless ``settings`` can talk to a real backend.

    Outside demo mode at least one key pin is required: with none, no token could be trusted.
    """
    if not settings.license.jwt_public_key_fingerprint:
        raise SettingsError(
            [
                SettingsProblem(
                    settings.source,
                    "license",
                    "jwt_public_key_fingerprint",
                    Reason(N_("settings.reason.pin_required")),
                )
            ]
        )
