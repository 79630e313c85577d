"""Stages: pure transformations over tables, with a manifest each. Ray wiring stays in one place."""
