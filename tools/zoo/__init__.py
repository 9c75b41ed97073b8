"""Model-zoo and distribution tools: packaging, offline zoo checks, download, checkpoint conversion, MONAI Label
(``python -m tools.zoo.<tool> --help``)."""
