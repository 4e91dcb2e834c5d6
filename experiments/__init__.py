"""A/B experiments: definitions, starting and stopping them through the service's hook, their
statsmodels analysis, reports, and promotion of the model that won."""
