"""A multi-hardware deep-learning benchmark harness: suite → cells → runner → records → report."""

__version__ = "0.1.0"
