"""Command-line tools of the repository; run them from its root as ``python -m tools.<name>`` (see ``README.md``
here).
"""
