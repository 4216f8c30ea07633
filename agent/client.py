"""The license client: login, token refresh, license and lease, devices, usage, with retries.

A facade: the client lives in three modules, and callers keep importing from here.

* :mod:`agent.license_client` — :class:`AsyncLicenseClient`, the agent's client of one TGFlow
  server for one device (tokens, lease, devices, ``/usage``), and :class:`License`;
* :mod:`agent.http_retry` — :class:`RetryingTransport` and :class:`RetryPolicy`, the one place
  where requests are retried (backoff, jitter, ``Retry-After``, :data:`NOT_IDEMPOTENT`);
* :mod:`agent.license_client_sync` — :class:`LicenseClient`, a synchronous facade for scripts;
* :mod:`agent.billing_client` — :class:`AsyncBillingClient`, the customer's billing calls on the
  license client's session.
"""

from agent.billing_client import AsyncBillingClient
from agent.config_checks import InsecureApiUrl, check_api_url
from agent.errors import LicenseError
from agent.http_retry import NOT_IDEMPOTENT, RetryingTransport, RetryPolicy, retry_after_seconds
from agent.license_client import AsyncLicenseClient, License
from agent.license_client_sync import LicenseClient

__all__ = [
    "NOT_IDEMPOTENT",
    "AsyncBillingClient",
    "AsyncLicenseClient",
    "InsecureApiUrl",
    "License",
    "LicenseClient",
    "LicenseError",
    "RetryPolicy",
    "RetryingTransport",
    "check_api_url",
    "retry_after_seconds",
]
