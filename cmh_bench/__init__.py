"""cmh-bench: a benchmark suite for cross-modal hashing (CMH) under label noise."""

__version__ = "0.1.0"
