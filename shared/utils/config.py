"""Values from the command line, read as the user meant them, and the settings a bundle config resolved to."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["as_bool", "plain_value", "plain_settings", "flatten_settings", "resolved_configs"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}
# keys of a MONAI config item that describe it rather than set anything
_NOT_SETTINGS = ("_desc_", "_requires_")


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


def plain_value(value: Any) -> Any:
    """``value`` as plain data: None, bool, int, float, str, and lists and str-keyed dicts of them (what JSON holds
    and ``torch.load(weights_only=True)`` reads back). Tuples become lists, NumPy scalars Python numbers.

    Raises:
        TypeError: anything else (a network, a tensor, a device), naming its type.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, complex):
        item = value.item() if hasattr(value, "item") else value  # NumPy scalars
        return item if isinstance(item, (bool, int)) else float(item)
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: plain_value(v) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__} is not plain data")


def plain_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a resolved config item: its entries that are plain data (:func:`plain_value`). Entries that
    hold objects (an optimizer's ``params``, the network given to ``param_groups``) are references to other items,
    not settings, and are left out, as are MONAI's ``_desc_`` and ``_requires_``."""
    settings = {}
    for key, value in config.items():
        if key in _NOT_SETTINGS:
            continue
        try:
            settings[str(key)] = plain_value(value)
        except TypeError:
            continue
    return settings


def flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"network_def#norm_name": "instance", ...}``: dicts are entered, keys joined with ``#``
    as in a config id (lists are values)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}#{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_settings(value, name))
        else:
            flat[name] = value
    return flat


def _active_resolver() -> Any:
    """The MONAI ``ReferenceResolver`` that is resolving the config item being instantiated now (the nearest on the
    call stack), or None outside a config resolution."""
    from monai.bundle.reference_resolver import ReferenceResolver

    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, ReferenceResolver):
                return candidate
            frame = frame.f_back
        return None
    finally:
        del frame


def resolved_configs(ids: str | Sequence[str]) -> dict[str, Any]:
    """``{id: its plain settings}`` for the items ``ids`` of the bundle config being resolved: each item's config
    with its references replaced by the values they resolved to (e.g. ``"out_channels": 14`` where the config says
    ``"@num_classes"``), as :func:`plain_settings` keeps them. Use it as a config item's ``_target_``, e.g.
    ``{"_target_": "scripts.utils.config.resolved_configs", "ids": ["network_def"]}``.

    MONAI gives a config item no handle on its parser: the resolver instantiating the calling item is taken from
    the call stack, and each item of ``ids`` is resolved first (a no-op when it already is: nothing is built twice).

    Returns:
        the settings (an item that is an expression or a value gives ``{id: value}``), without the ids the config
        lacks; ``{}`` when called outside a config resolution.
    """
    resolver = _active_resolver()
    if resolver is None:
        return {}
    found = {}
    for item_id in [ids] if isinstance(ids, str) else list(ids):
        if item_id not in resolver.items:
            continue
        value = resolver.get_resolved_content(item_id)
        config = resolver.items[item_id].get_config()
        if isinstance(config, Mapping):
            found[item_id] = plain_settings(config)
        else:  # an expression or a value: what it resolved to
            found.update(plain_settings({item_id: value}))
    return found
