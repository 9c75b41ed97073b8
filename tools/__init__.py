"""Command-line tools of the repository (run them from its root: ``python tools/<tool>.py``)."""
