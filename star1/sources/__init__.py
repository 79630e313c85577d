"""Prompt sources: a registry of named sources (data), format readers, and loading into the row schema."""
