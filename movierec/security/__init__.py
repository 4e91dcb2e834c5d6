"""Security of the data flows: detectors over our own telemetry (see docs/security.md)."""
