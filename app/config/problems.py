"""What is wrong with a settings file: :class:`SettingsProblem` (one thing, located) and
:class:`SettingsError` (every problem found, raised at once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.catalog import N_, Reason, os_error_reason


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


def os_reason(exc: OSError, *, writing: bool = False) -> Reason:
    key, params = os_error_reason(exc)
    wrapper = N_("settings.reason.unwritable") if writing else N_("settings.reason.unreadable")
    return Reason(wrapper, {"reason": Reason(key, params)})
