"""Editing the settings file: ``configupdater`` keeps the user's comments, order and blank lines,
and the file is replaced only once the edited text has passed the same validation as a read."""

from __future__ import annotations

import codecs
import configparser
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from app.catalog import N_, Reason
from app.config.files import decode, read_file, replace_file
from app.config.problems import SettingsError, SettingsProblem
from app.config.validation import parse_settings, read_sections, syntax_problems, unknown
from app.settings_schema import SECTIONS, Settings, example_text, help_comments, section_keys

if TYPE_CHECKING:
    from configupdater import ConfigUpdater


def check_changes(changes: Mapping[tuple[str, str], str], path: Path) -> None:
    problems = []
    for (section, key), value in changes.items():
        model = SECTIONS.get(section)
        if model is None:
            problems.append(
                SettingsProblem(path, section, key, unknown("section", section, SECTIONS))
            )
        elif key not in section_keys(model):
            problems.append(
                SettingsProblem(path, section, key, unknown("key", key, section_keys(model)))
            )
        elif not isinstance(value, str) or any(c in value for c in "\r\n\x0b\x0c\x1c\x1d\x1e"):
            problems.append(
                SettingsProblem(path, section, key, Reason(N_("settings.reason.one_line")))
            )
    if problems:
        raise SettingsError(problems)


def set_option(updater: ConfigUpdater, section: str, key: str, value: str) -> None:
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
            set_option(updater, section, key, value)
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
    check_changes(changes, path)
    if path.exists():
        data = read_file(path)
        original, had_bom = decode(data, path), data.startswith(codecs.BOM_UTF8)
    else:
        original, had_bom = example_text(), False
    crlf = "\r\n" in original
    text = original.replace("\r\n", "\n")
    read_sections(text, path)  # an unparseable file is reported, not half-edited
    try:
        edited = edit_settings_text(text, changes)
    except configparser.Error as exc:
        raise SettingsError(syntax_problems(exc, path, text)) from None
    settings = parse_settings(edited, source=path)
    if crlf:
        edited = edited.replace("\n", "\r\n")
    replace_file(path, ("\ufeff" if had_bom else "") + edited)
    return settings
