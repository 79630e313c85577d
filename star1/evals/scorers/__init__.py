"""Scorers: one module per kind of verdict (guard model, refusal, math, multiple choice, code)."""
