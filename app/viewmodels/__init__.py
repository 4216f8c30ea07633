"""View-models: the desktop's logic behind each panel, as QObjects testable without a window.

Each one talks to :class:`app.core.Core` only through the engine thread (``Engine.submit`` /
``Engine.call_soon``) and reports back with signals in the GUI thread. Widgets display what the
view-models say and forward what the user does; they hold no logic of their own.
"""
