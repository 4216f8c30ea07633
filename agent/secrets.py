"""Where the refresh token lives: the OS keyring, or a 0600 file when there is none.

DESIGN.md ("Desktop behaviour"): secrets live in the OS keyring (service ``TGFlow``); where no
keyring backend exists (headless Linux gets keyring's ``fail`` backend, whose every call raises
``NoKeyringError``) the refresh token is kept in ``refresh_token`` in the data directory with mode
0600, and the program says so: :attr:`RefreshTokenStore.fell_back` is ``True`` and a warning is
logged under ``tgflow.agent.secrets``.

Refresh tokens rotate on every use and a used one revokes its whole family, so :meth:`save`
returns only once the new token is durable (the file is fsync'd, then renamed, then the directory
fsync'd; a keyring write is synchronous).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

import keyring
import keyring.backends.chainer
import keyring.backends.fail
import keyring.backends.null
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

from agent.errors import SecretStoreError
from agent.private_files import (
    PRIVATE_FILE_MODE,
    default_data_dir,
    remove_file,
    write_private_file,
)

log = logging.getLogger("tgflow.agent.secrets")

#: The keyring service name every TGFlow secret is stored under.
KEYRING_SERVICE: Final = "TGFlow"
#: The keyring user name when no account e-mail is given.
DEFAULT_ACCOUNT: Final = "refresh_token"
#: Name of the fallback file inside the data directory.
FALLBACK_FILE_NAME: Final = "refresh_token"
#: ``backend_name`` of the fallback file.
FILE_BACKEND_NAME: Final = "file"
#: A longer value is not a refresh token (the server's are 43 characters).
MAX_SECRET_CHARS: Final = 4096


def _no_keyring_reason(backend: KeyringBackend) -> str | None:
    """Why ``backend`` cannot keep a secret, or ``None`` when it can."""
    if isinstance(backend, keyring.backends.fail.Keyring):
        return "no OS keyring backend is available"
    if isinstance(backend, keyring.backends.null.Keyring):
        return "the keyring backend is the null backend, which stores nothing"
    if isinstance(backend, keyring.backends.chainer.ChainerBackend) and not backend.backends:
        return "the chained keyring backend has no backend to chain"
    return None


def _backend_label(backend: KeyringBackend) -> str:
    kind = type(backend)
    return f"keyring:{kind.__module__}.{kind.__qualname__}"


def _check_secret(token: str) -> None:
    if not isinstance(token, str) or not token or len(token) > MAX_SECRET_CHARS:
        raise ValueError("a refresh token is a non-empty string")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError("a refresh token holds no whitespace or control characters")


class RefreshTokenStore:
    """Saves, loads and clears the refresh token: in the OS keyring, else in a 0600 file.

    ``backend`` is the keyring backend to use (default: ``keyring.get_keyring()``); tests pass an
    in-memory one, or ``keyring.backends.fail.Keyring()`` to force the fallback. A backend that
    raises ``NoKeyringError`` later switches the store to the file at that moment. Other keyring
    failures (a locked keyring, a denied access) raise :class:`SecretStoreError` rather than
    silently moving the secret to a weaker place.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        account: str = DEFAULT_ACCOUNT,
        backend: KeyringBackend | None = None,
    ) -> None:
        """Store under ``account`` (the account e-mail, or a fixed key) in service ``TGFlow``.

        The fallback file is ``data_dir/refresh_token`` (default data dir: platformdirs' user
        data dir ``TGFlow/``).
        """
        if not account:
            raise ValueError("the keyring account name must not be empty")
        self.account = account
        self.path = Path(data_dir if data_dir is not None else default_data_dir()) / (
            FALLBACK_FILE_NAME
        )
        self._backend: KeyringBackend | None = (
            backend if backend is not None else keyring.get_keyring()
        )
        #: Why the store uses the file, or ``None`` while it uses the keyring.
        self.fallback_reason: str | None = None
        reason = _no_keyring_reason(self._backend)
        if reason is not None:
            self._fall_back(reason)

    # --- what the program reports ---------------------------------------------------------------

    @property
    def fell_back(self) -> bool:
        """``True`` when the token is kept in the 0600 file because no keyring exists."""
        return self._backend is None

    @property
    def backend_name(self) -> str:
        """``"file"`` for the fallback, else ``"keyring:"`` and the backend's class."""
        return FILE_BACKEND_NAME if self._backend is None else _backend_label(self._backend)

    @property
    def location(self) -> str:
        """Where the token is kept, for a message to the user."""
        if self._backend is None:
            return str(self.path)
        return f"the OS keyring ({type(self._backend).__name__}), service {KEYRING_SERVICE!r}"

    # --- operations -----------------------------------------------------------------------------

    def save(self, token: str) -> None:
        """Store ``token``, replacing the previous one; durable when this returns.

        Raises :class:`ValueError` for a value that is not a token and :class:`SecretStoreError`
        when it cannot be stored.
        """
        _check_secret(token)
        backend = self._backend
        if backend is not None:
            try:
                backend.set_password(KEYRING_SERVICE, self.account, token)
            except NoKeyringError as exc:
                self._fall_back(f"the keyring backend reported no keyring ({exc})")
            except KeyringError as exc:
                raise SecretStoreError(
                    f"cannot store the refresh token in {self.location}: {exc}"
                ) from exc
            else:
                # A token left in the file by an earlier fallback must not outlive this one.
                try:
                    remove_file(self.path)
                except OSError as exc:
                    log.warning("cannot remove the old refresh token file %s: %s", self.path, exc)
                return
        try:
            write_private_file(self.path, (token + "\n").encode("utf-8"), prefix=".refresh-")
        except OSError as exc:
            raise SecretStoreError(f"cannot write the refresh token to {self.path}: {exc}") from exc

    def load(self) -> str | None:
        """The stored refresh token, or ``None`` when there is none.

        With a keyring, a token found only in the fallback file (left there before a keyring was
        available) is moved into the keyring. Raises :class:`SecretStoreError` when the store
        cannot be read.
        """
        backend = self._backend
        if backend is not None:
            try:
                token = backend.get_password(KEYRING_SERVICE, self.account)
            except NoKeyringError as exc:
                self._fall_back(f"the keyring backend reported no keyring ({exc})")
            except KeyringError as exc:
                raise SecretStoreError(
                    f"cannot read the refresh token from {self.location}: {exc}"
                ) from exc
            else:
                if token is not None:
                    return token
                legacy = self._read_file()
                if legacy is not None:
                    self.save(legacy)
                    log.info("moved the refresh token from %s into the OS keyring", self.path)
                return legacy
        return self._read_file()

    def clear(self) -> None:
        """Remove the refresh token from the keyring and from the file (at logout)."""
        backend = self._backend
        if backend is not None:
            try:
                backend.delete_password(KEYRING_SERVICE, self.account)
            except PasswordDeleteError:
                pass  # nothing stored: already clear
            except NoKeyringError as exc:
                self._fall_back(f"the keyring backend reported no keyring ({exc})")
            except KeyringError as exc:
                raise SecretStoreError(
                    f"cannot remove the refresh token from {self.location}: {exc}"
                ) from exc
        self._remove_file()

    # --- internals ------------------------------------------------------------------------------

    def _fall_back(self, reason: str) -> None:
        self._backend = None
        self.fallback_reason = reason
        log.warning(
            "%s: the refresh token is kept in %s (readable by this user only, mode 0600) "
            "instead of the OS keyring",
            reason,
            self.path,
        )

    def _read_file(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read(MAX_SECRET_CHARS + 2)
                mode = os.fstat(fh.fileno()).st_mode
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretStoreError(
                f"cannot read the refresh token from {self.path}: {exc}"
            ) from exc
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            # Copied or restored with looser permissions: close them before anyone else reads.
            log.warning("%s was readable by others; its mode is now 0600", self.path)
            try:
                os.chmod(self.path, PRIVATE_FILE_MODE)
            except OSError as exc:
                log.warning("cannot restrict %s: %s", self.path, exc)
        token = text.strip()
        try:
            _check_secret(token)
        except ValueError:
            log.warning("%s does not hold a refresh token; ignored", self.path)
            return None
        return token

    def _remove_file(self) -> None:
        try:
            remove_file(self.path)
        except OSError as exc:
            raise SecretStoreError(f"cannot remove {self.path}: {exc}") from exc
