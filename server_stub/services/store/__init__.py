"""Store purchases (issue #13): the product catalogue, RuStore's adapter and notifications, and
verifying a purchase into points or a plan exactly once (docs/points.md, "Store purchases")."""
