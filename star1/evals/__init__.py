"""Evaluation: benchmarks as data, generation engines, scorers, per-sample results, reports."""
