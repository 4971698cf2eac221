"""Webhooks: per-team endpoints, an outbox of signed deliveries, and the sender."""
