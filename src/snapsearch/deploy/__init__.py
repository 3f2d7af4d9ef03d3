"""Deployment: runtimes behind one interface (and, with the export issue, exporters and bundles)."""
