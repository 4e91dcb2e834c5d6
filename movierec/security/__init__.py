"""Attacks on the service and the model, detected from our own telemetry."""
