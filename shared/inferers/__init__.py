"""Inferers: any MONAI inferer run under mixed precision (see the package docstring of ``shared``)."""
