"""Whether Python imports this bundle's ``scripts`` package, checked before any of the bundle's code is imported.

A bundle's configs name its code ``scripts.*``; MONAI puts the bundle's folder on ``sys.path`` when a run starts, but
after the working folder (``sys.path[0]`` under ``python -m``). A working folder with its own ``scripts`` package
(or ``scripts.py``) therefore shadows the bundle's: the run fails with MONAI's "Cannot locate class or function path:
'scripts....'", or runs the user's code under the bundle's names. Every config's ``run`` starts with
:func:`check_scripts_package`, reached by file path, since an ``import scripts`` would reach the user's package::

    "check_scripts_package": "$runpy.run_path(next(filter(os.path.isfile, [os.path.join(p,
        'scripts/utils/scripts_package.py') for p in sys.path[1:] + sys.path[:1]])))['check_scripts_package']()"

The search looks at ``sys.path[0]``, the working folder, last: MONAI's ``run`` has just put the bundle's folder at
``sys.path[1]``, and a working folder that is another bundle's holds a copy of this file (which would check that
bundle against itself). The working folder still serves when it is the bundle and the config file lies outside the
bundle's ``configs``. This module uses the standard library only and imports nothing relatively: it runs outside
its package.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys

__all__ = ["ScriptsShadowedError", "imported_scripts", "shadowing_message", "check_scripts_package"]


class ScriptsShadowedError(ImportError):
    """Python imports another ``scripts`` package than the bundle's."""


def imported_scripts() -> str | None:
    """The file or folder Python imports ``scripts`` from (already imported, or the first on ``sys.path``; nothing
    is executed): a package's folder, or a module's file; None when there is none."""
    module = sys.modules.get("scripts")
    if module is not None:
        spec = getattr(module, "__spec__", None)
        origin = getattr(module, "__file__", None) or (spec.origin if spec else None)
        locations = list(getattr(module, "__path__", []) or [])
    else:
        spec = importlib.util.find_spec("scripts")
        if spec is None:
            return None
        origin, locations = spec.origin, list(spec.submodule_search_locations or [])
    if origin and os.path.basename(origin) == "__init__.py":
        return os.path.dirname(origin)
    return origin if origin and origin not in ("namespace", "built-in") else (locations[0] if locations else None)


def shadowing_message(found: str, bundle_scripts: str) -> str:
    """What to tell a user whose ``scripts`` (``found``) shadows the bundle's (``bundle_scripts``)."""
    folder = os.path.dirname(os.path.abspath(found))
    where = "the working folder" if os.path.realpath(folder) == os.path.realpath(os.getcwd()) else "a folder"
    return (
        f"Python imports the package 'scripts' from {found}, not the bundle's code in {bundle_scripts}: {where} "
        f"{folder} is earlier on Python's path (sys.path) and has its own 'scripts', which shadows the bundle's. Run "
        "the bundle from another folder (--config_file and --bundle_root take paths), or rename that 'scripts'."
    )


def _in_bundle_run() -> bool:
    """Whether this process is a ``python -m monai.bundle run`` (``errors.is_bundle_run`` beside this file)."""
    return runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "errors.py"))["is_bundle_run"]()


def check_scripts_package() -> None:
    """Make sure that ``import scripts`` imports the package this file is part of.

    Raises:
        ScriptsShadowedError: another ``scripts`` comes first, naming both paths and how to fix it. In a
            ``python -m monai.bundle run`` process it ends the run instead (``SystemExit``), its message being the
            last line (``error: ImportError: ...``), as every failed run's cause is.
    """
    bundle_scripts = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = imported_scripts()
    if found is None or os.path.realpath(found) == os.path.realpath(bundle_scripts):
        return
    message = shadowing_message(found, bundle_scripts)
    if _in_bundle_run():
        raise SystemExit(f"error: ImportError: {message}")
    raise ScriptsShadowedError(message)
