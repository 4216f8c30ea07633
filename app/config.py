"""``settings.ini``: where it is found, what it may hold, and how the program edits it.

DESIGN.md ("Desktop behaviour"): an unknown section or key, or a bad value, is reported with the
file, the ``[section] key`` and the reason, and the program does not start half-configured. Every
problem in a file is reported at once (a syntax error stops the reading, as in any parser), and
the entry point prints :class:`SettingsError`'s message, never a traceback.

The file is read with :mod:`configparser` in strict mode (a repeated section or key is an error)
without interpolation; a ``[DEFAULT]`` section is not special, and therefore unknown. Edits go
through ``configupdater`` so that the user's comments, order and blank lines survive, and the file
is replaced atomically only once the edited text has passed the same validation.
"""

from __future__ import annotations

import codecs
import configparser
import contextlib
import difflib
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from agent.private_files import fsync_directory
from app.catalog import N_, Explained, Reason, os_error_reason
from app.paths import SETTINGS_FILE_NAME
from app.settings_schema import (
    SECTIONS,
    AntiSpamSettings,
    BroadcastSettings,
    FloodSettings,
    LicenseSettings,
    Section,
    Settings,
    TelegramSettings,
    TelemetrySettings,
    UiSettings,
    example_text,
    help_comments,
    section_keys,
    section_parsers,
)

if TYPE_CHECKING:
    from configupdater import ConfigUpdater

#: Mode of a settings file the program creates (it may hold the Telegram api_hash).
NEW_SETTINGS_FILE_MODE: Final = 0o600
#: A larger file is not a settings file.
MAX_SETTINGS_BYTES: Final = 1024 * 1024

# configparser treats the section named by ``default_section`` as defaults for every other
# section; no real header can be this, so ``[DEFAULT]`` is reported as an unknown section.
_NO_DEFAULT_SECTION: Final = "\x00no default section"

__all__ = [
    "SECTIONS",
    "AntiSpamSettings",
    "BroadcastSettings",
    "FloodSettings",
    "LicenseSettings",
    "Settings",
    "SettingsError",
    "SettingsProblem",
    "TelegramSettings",
    "TelemetrySettings",
    "UiSettings",
    "check_live_settings",
    "edit_settings_text",
    "find_config",
    "frozen_executable_dir",
    "load_settings",
    "parse_settings",
    "save_settings",
    "section_keys",
]


# --- problems -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingsProblem:
    """One thing wrong with a settings file.

    ``file`` is ``None`` for settings that came from no file; ``section`` and ``key`` are
    ``None`` when the problem is not about one (an unreadable file, a syntax error). ``line`` is
    given for syntax errors, which configparser locates.
    """

    file: Path | None
    section: str | None
    key: str | None
    #: Why, in no language yet (``reason`` is the English text).
    why: Reason
    line: int | None = None

    @property
    def reason(self) -> str:
        return str(self.why)

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else "<settings>"
        if self.line is not None:
            where += f", line {self.line}"
        if self.section is not None:
            where += f": [{self.section}]"
            if self.key is not None:
                where += f" {self.key}"
        return f"{where}: {self.reason}"


class SettingsError(Exception):
    """The settings cannot be used; :attr:`problems` lists every reason, the message names each."""

    def __init__(self, problems: Sequence[SettingsProblem]) -> None:
        """Carry ``problems`` (at least one)."""
        if not problems:
            raise ValueError("a SettingsError needs at least one problem")
        self.problems: tuple[SettingsProblem, ...] = tuple(problems)
        count = len(self.problems)
        heading = "invalid settings:" if count == 1 else f"invalid settings ({count} problems):"
        super().__init__("\n".join([heading, *(f"  {problem}" for problem in self.problems)]))


def _os_reason(exc: OSError, *, writing: bool = False) -> Reason:
    key, params = os_error_reason(exc)
    wrapper = N_("settings.reason.unwritable") if writing else N_("settings.reason.unreadable")
    return Reason(wrapper, {"reason": Reason(key, params)})


# --- the model: app/settings_schema.py ----------------------------------------------------------

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
                reasons[key] = _why(exc)
    section = model(**values)
    for key, (other, check) in model.RULES.items():
        # Applied whenever both keys are good, given or default: a file that sets only
        # min_delay_sec = 10 (above the default maximum) or only api_id is half-configured.
        if key not in reasons and other not in reasons:
            try:
                check(getattr(section, key), getattr(section, other))
            except ValueError as exc:
                reasons[key] = _why(exc)
    return section, {key: reasons[key] for key in parsers if key in reasons}


def _why(exc: ValueError) -> Reason:
    if isinstance(exc, Explained):
        return exc.why
    return Reason(N_("settings.reason.other"), {"reason": str(exc)})


def _unknown(kind: Literal["section", "key"], name: str, known: Iterable[str]) -> Reason:
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


# --- reading ------------------------------------------------------------------------------------


def _syntax_problems(
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


def _read_sections(text: str, source: Path | None) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, default_section=_NO_DEFAULT_SECTION
    )
    try:
        parser.read_string(text, source=str(source) if source is not None else "<settings>")
    except configparser.Error as exc:
        raise SettingsError(_syntax_problems(exc, source, text)) from None
    return {name: dict(parser.items(name, raw=True)) for name in parser.sections()}


def parse_settings(text: str, *, source: Path | None = None) -> Settings:
    """Validate settings-file ``text``; ``source`` names the file in problems and in the result.

    Raises :class:`SettingsError` listing every problem found, in the file's order.
    """
    problems: list[SettingsProblem] = []
    sections: dict[str, Any] = {}
    for section, items in _read_sections(text, source).items():
        model = SECTIONS.get(section)
        if model is None:
            problems.append(
                SettingsProblem(source, section, None, _unknown("section", section, SECTIONS))
            )
            continue
        keys = section_keys(model)
        known = {key: value for key, value in items.items() if key in keys}
        problems.extend(
            SettingsProblem(source, section, key, _unknown("key", key, keys))
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


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            [
                SettingsProblem(
                    path,
                    None,
                    None,
                    Reason(
                        N_("settings.reason.not_utf8"),
                        {"byte": f"{data[exc.start]:#04x}", "offset": exc.start},
                    ),
                )
            ]
        ) from None


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SETTINGS_BYTES + 1)
    except OSError as exc:
        raise SettingsError([SettingsProblem(path, None, None, _os_reason(exc))]) from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise SettingsError(
            [
                SettingsProblem(
                    path,
                    None,
                    None,
                    Reason(N_("settings.reason.too_large"), {"limit": MAX_SETTINGS_BYTES}),
                )
            ]
        )
    return data


def load_settings(path: Path | None) -> Settings:
    """Read and validate ``path``; ``None`` gives the defaults. Raises :class:`SettingsError`."""
    if path is None:
        return Settings()
    return parse_settings(_decode(_read_file(path), path), source=path)


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


# --- finding ------------------------------------------------------------------------------------


def frozen_executable_dir() -> Path | None:
    """The directory of the frozen (PyInstaller) program, ``None`` when running from source.

    From source there is no "beside the program": the repository or the current directory is
    deliberately not searched, so a stray ``settings.ini`` there is never picked up.
    """
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return None


def find_config(
    explicit: Path | None, *, executable_dir: Path | None, config_dir: Path
) -> Path | None:
    """The settings file to use, or ``None`` for the defaults.

    ``explicit`` (``--config PATH``) wins and must be an existing file, else
    :class:`SettingsError`; then ``settings.ini`` in ``executable_dir`` (see
    :func:`frozen_executable_dir`); then ``settings.ini`` in ``config_dir``.
    """
    if explicit is not None:
        if not explicit.exists():
            reason = Reason(N_("settings.reason.config_missing"))
        elif not explicit.is_file():
            reason = Reason(N_("settings.reason.config_not_file"))
        else:
            return explicit
        raise SettingsError([SettingsProblem(explicit, None, None, reason)])
    candidates = [config_dir / SETTINGS_FILE_NAME]
    if executable_dir is not None:
        candidates.insert(0, executable_dir / SETTINGS_FILE_NAME)
    return next((path for path in candidates if path.is_file()), None)


# --- editing ------------------------------------------------------------------------------------


def _check_changes(changes: Mapping[tuple[str, str], str], path: Path) -> None:
    problems = []
    for (section, key), value in changes.items():
        model = SECTIONS.get(section)
        if model is None:
            problems.append(
                SettingsProblem(path, section, key, _unknown("section", section, SECTIONS))
            )
        elif key not in section_keys(model):
            problems.append(
                SettingsProblem(path, section, key, _unknown("key", key, section_keys(model)))
            )
        elif not isinstance(value, str) or any(c in value for c in "\r\n\x0b\x0c\x1c\x1d\x1e"):
            problems.append(
                SettingsProblem(path, section, key, Reason(N_("settings.reason.one_line")))
            )
    if problems:
        raise SettingsError(problems)


def _set_option(updater: ConfigUpdater, section: str, key: str, value: str) -> None:
    """Set ``key`` in the existing ``section``; a new key goes after the section's last key."""
    from configupdater.block import Comment
    from configupdater.option import Option

    block = updater[section]
    if block.has_option(key):
        block[key].value = value
        return
    # Comments after the last key belong to what follows (configupdater keeps a comment above a
    # header in the previous section), and comments right under the header describe the section.
    body = list(block.iter_blocks())
    options = [b for b in body if isinstance(b, Option)]
    if options:
        builder = options[-1].add_after
    elif body and isinstance(body[0], Comment):
        builder = body[0].add_after
    elif body:
        builder = body[0].add_before
    else:
        block.set(key, value)
        return
    for comment in help_comments(section, key):
        builder.comment(comment, comment_prefix=comment.lstrip()[:1])
    builder.option(key, value)


def edit_settings_text(text: str, changes: Mapping[tuple[str, str], str]) -> str:
    """``text`` with ``changes`` (``(section, key) -> value``) applied, comments and order kept.

    A missing key is added at the end of its section, a missing section at the end of the file,
    each with the example's comment. The result is not validated (:func:`save_settings` does).
    """
    # Imported here: only saving needs it, and start-up should not wait for it.
    from configupdater import ConfigUpdater

    updater = ConfigUpdater(strict=True)
    updater.read_string(text)
    missing: dict[str, list[tuple[str, str]]] = {}
    for (section, key), value in changes.items():
        if not updater.has_section(section):
            missing.setdefault(section, []).append((key, value))
        else:
            _set_option(updater, section, key, value)
    edited = str(updater)
    for section, items in missing.items():
        lines = [f"[{section}]"]
        for key, value in items:
            lines += [*help_comments(section, key), f"{key} = {value}"]
        if edited and not edited.endswith("\n"):
            edited += "\n"
        separator = "\n" if edited.strip() and not edited.endswith("\n\n") else ""
        edited += separator + "\n".join(lines) + "\n"
    return edited


def save_settings(path: Path, changes: Mapping[tuple[str, str], str]) -> Settings:
    """Apply ``changes`` (``(section, key) -> value``) to the settings file at ``path``.

    The edited text is validated first: on any problem :class:`SettingsError` is raised and the
    file is left untouched. A missing file is created from ``settings.ini.example``'s text (mode
    0600). Comments, order, blank lines, a UTF-8 BOM and CRLF line ends are kept; the file is
    replaced atomically. Returns the settings the new file holds.
    """
    _check_changes(changes, path)
    if path.exists():
        data = _read_file(path)
        original, had_bom = _decode(data, path), data.startswith(codecs.BOM_UTF8)
    else:
        original, had_bom = example_text(), False
    crlf = "\r\n" in original
    text = original.replace("\r\n", "\n")
    _read_sections(text, path)  # an unparseable file is reported, not half-edited
    try:
        edited = edit_settings_text(text, changes)
    except configparser.Error as exc:
        raise SettingsError(_syntax_problems(exc, path, text)) from None
    settings = parse_settings(edited, source=path)
    if crlf:
        edited = edited.replace("\n", "\r\n")
    _replace_file(path, ("\ufeff" if had_bom else "") + edited)
    return settings


def _replace_file(path: Path, text: str) -> None:
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = NEW_SETTINGS_FILE_MODE
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SettingsError(
            [SettingsProblem(path, None, None, _os_reason(exc, writing=True))]
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise SettingsError(
            [SettingsProblem(path, None, None, _os_reason(exc, writing=True))]
        ) from None
    fsync_directory(directory)
