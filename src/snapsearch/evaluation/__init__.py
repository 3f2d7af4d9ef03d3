"""Cascade evaluation: protocols, every strategy scored on the same Cascade outputs, latency, reports."""
