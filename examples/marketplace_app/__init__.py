"""An example marketplace app (``app.py``) and a tenant host page that embeds it (``host.py``)."""
