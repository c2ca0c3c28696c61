"""The data layer: scan + validate an ImageFolder, the manifest, splits, preprocessing, caches."""
