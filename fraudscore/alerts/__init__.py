"""Fraud alerts that are never lost: an outbox row per alert and destination, written in the
transaction that records the decision (outbox.py), delivered by a background sender (sender.py)
to Slack and a signed generic webhook (destinations.py, signing.py).

Imports run downward only: alerts uses the store's schema, records and engine helpers; the store
knows nothing of alerts and takes their hook and sender as plain objects (store/runtime.py).
Nothing is imported here, so a receiver can use ``fraudscore.alerts.signing`` alone.
"""
