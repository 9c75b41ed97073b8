"""Measurements and checks of the code on this machine: step times, memory, a GPU check, an MAE health check, X-ray
bit depth, fault injection (``python -m tools.measure.<tool> --help``)."""
