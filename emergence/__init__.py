"""emergence: a reproducible pipeline for studying emergent abilities of language models across scale."""

__version__ = "0.1.0"
