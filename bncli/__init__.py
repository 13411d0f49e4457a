"""bncli: see, measure and trust what Batch Normalization does."""

__version__ = "0.1.0"
