"""Fairness: requirements with measures over our own telemetry and the offline evaluation (pure
``measures``), the exposure-aware re-ranking (pure ``rerank``), the report (I/O, ``report``)."""
