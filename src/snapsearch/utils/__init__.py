"""Small shared helpers that have no better home."""
