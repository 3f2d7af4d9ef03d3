"""snapsearch: category-gated (cascade) visual product search from user photos."""

__version__ = "0.1.0"
