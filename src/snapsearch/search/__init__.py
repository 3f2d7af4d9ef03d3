"""The search product: the Cascade (runtime + index + product table + strategies), what it returns,
how it is opened, and its live catalog."""
