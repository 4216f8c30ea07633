"""The text of ``settings.ini.example``, shipped inside the package.

:func:`app.config.save_settings` creates a missing settings file from it, so that a new file
carries the same comments as the example. It must stay identical to the repository's
``settings.ini.example`` (``tests/app/test_config.py`` checks that).
"""

from __future__ import annotations

from typing import Final

SETTINGS_EXAMPLE: Final = """\
; TGFlow desktop settings. Copy to settings.ini (beside the program, or in the user config dir,
; or pass --config PATH). Every key is listed here with its default; an unknown key or a bad
; value is reported with the file, the key and the reason, and the program does not start.

[license]
; Base URL of the licensing backend. Plain http:// is accepted only for loopback hosts.
api_base_url = http://127.0.0.1:8000
; Pins of the backend's signing keys: sha256/ + base64url(SHA-256 of the key's DER
; SubjectPublicKeyInfo), comma separated. `tgflow-server keys pins` prints them.
; Tokens signed by any other key are refused, even if the backend publishes it.
jwt_public_key_fingerprint =

[flood]
; Errors in a row (PeerFlood, timeouts) after which an account is Excluded until restored.
max_consecutive_errors = 3
; First cooldown after an error, in seconds; repeated errors double it.
cooldown_sec = 300

[anti_spam]
; false: only Telegram's own FloodWait is honoured (exactly the seconds it asks).
enabled = true

[telegram]
; Your own application id and hash from my.telegram.org.
api_id =
api_hash =

[broadcast]
; Pause between two messages from one account, in seconds (minimum and maximum; a random
; pause in between is used).
min_delay_sec = 3
max_delay_sec = 7
; Messages reserved from the quota per batch.
batch_size = 50

[telemetry]
; Anonymous usage events to the backend (no recipients, no message text). Off by default.
enabled = false

[ui]
; Language of the window: ru (Russian) or en (English).
language = ru
"""
