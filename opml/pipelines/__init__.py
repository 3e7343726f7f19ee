"""Pipelines: a YAML DAG of steps (dataset, automl, register, deploy, script) run step by step in
their own processes, published behind a REST endpoint on the control plane and scheduled there."""
