"""Utils of the MAE self pre-training bundles (see the package docstring of ``shared``)."""
