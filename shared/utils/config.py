"""Values from the command line, read as the user meant them."""

from __future__ import annotations

__all__ = ["as_bool"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def as_bool(value: object, name: str = "value") -> bool:
    """``value`` as a bool: True/False, 1/0, or the strings true/false, yes/no, on/off, 1/0 in any case.

    ``python -m monai.bundle run --resume false`` passes the *string* ``"false"``, which Python calls true; this reads
    it as False.

    Raises:
        ValueError: any other value, naming ``name``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}.")
