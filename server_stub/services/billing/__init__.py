"""Subscription billing (issue #12): plans and prices, subscriptions, providers, dunning."""
