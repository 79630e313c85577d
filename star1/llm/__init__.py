"""Model layer: OpenAI-compatible async client, shared rate limits, response cache, output parsing."""
