"""star1: STAR-1-style safety-alignment data, fine-tuning and evaluation for reasoning models."""

__version__ = "0.1.0"
