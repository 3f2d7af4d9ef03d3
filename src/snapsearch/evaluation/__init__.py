"""Cascade evaluation: inference over a manifest, strategies side by side, metrics, latency, reports."""
