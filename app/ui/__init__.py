"""The widgets of the desktop window. They display what the view-models say and forward what the
user does; the logic is in :mod:`app.viewmodels`."""
