"""Fake payment providers for tests and the demo: small ASGI apps that speak Stripe's and
CloudPayments' real request, response and webhook-signature formats (docs/billing.md,
"Providers and their fakes"). Nothing else in the project is faked this way."""
