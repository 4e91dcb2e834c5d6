"""Security of the data flows: attacks on the service and the model, detected from our own telemetry
(see docs/security.md and docs/security-serving.md)."""
