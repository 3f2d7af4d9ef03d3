"""Data layer: manifests, sources, robust image reading, preprocessing contract, augmentations."""
