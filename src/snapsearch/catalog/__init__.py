"""Catalog embedding at scale: shards on disk written by Lightning predict on any strategy."""
