"""Reporting on eval runs: scorecards, comparisons and their statistics, nightly history, and the Markdown
and HTML renderers. Reads eval runs through the results contract (`star1.evals.results`) only."""
