"""Loupe: few-shot custom image concepts and visual search over frozen-backbone embeddings."""

__version__ = "0.1.0"
