"""Online metrics: what viewers did after our answers, per model version and variant."""
