"""AutoML: featurization, search, ensembles, metrics, guardrails, explanations."""
