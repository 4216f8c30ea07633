"""A license on the desktop tests' server, for the desktop's online activation: the portal's
license (tests/helpers/activation.py) made for the desktop's domain and version, and the text of
its signed versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.demo import DemoBackend
from server_stub.db import transaction
from server_stub.portal_models import LicenseVersion
from tests.helpers.activation import PortalLicense, make_license
from tests.helpers.desktop_license import DOMAIN


def desktop_license(backend: DemoBackend, **columns: Any) -> PortalLicense:
    """An active portal license for the test desktop (its domain, program version, modules)."""
    values: dict[str, Any] = {
        "domain": DOMAIN,
        "min_version": "0.1",
        "max_version": "1.0",
        "modules": ["marketplace", "multi_account"],
    }
    values.update(columns)
    return make_license(backend.services, **values)


def version_text(backend: DemoBackend, lic: PortalLicense, version: int = 1) -> str:
    """The signed file of ``version`` of ``lic``, as the portal hands it out."""
    with transaction(backend.services.ctx.write) as session:
        text = session.scalar(
            select(LicenseVersion.file_text).where(
                LicenseVersion.license_id == lic.id, LicenseVersion.version == version
            )
        )
    assert isinstance(text, str)
    return text


def write_version(path: Path, backend: DemoBackend, lic: PortalLicense, version: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(version_text(backend, lic, version), encoding="utf-8")
    return path
