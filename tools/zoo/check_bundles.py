"""Offline MONAI model-zoo checks for the bundles of this repository: one command runs them all.

For every bundle (every folder under ``bundles/`` with a ``configs/metadata.json``), or the ones named, this:

1. checks the sources: ``version`` is a key of ``changelog``, every JSON file is 4-space formatted (the zoo's
   pre-commit rule), and ``scripts`` links to the repository's single ``shared/`` module;
2. packages the bundle with ``tools/zoo/package_bundles.py`` and extracts the zip into a temporary folder, so that the
   remaining checks see the bundle as a user who downloaded it does (``scripts/`` a real copy, no run outputs); a
   file over 1 MB in the zip fails (``file_sizes``: the zoo's pre-commit ``check-added-large-files --maxkb=1024``
   refuses it; trained weights go to a ``large_files.yml`` with ``--weights_url``), other notes of the packager
   are ``WARN`` rows;
3. checks the required files (``configs/metadata.json``, ``LICENSE``, ``configs/inference.json``, and
   ``models/model.pt`` or a ``large_files.yml``); a bundle that ships no weights gets TEMPORARY random-initialised
   weights in the temporary copy (status ``TEMP``), which the export checks need and which are never packaged;
4. runs what the zoo's ``ci/verify_bundle.py`` runs, with MONAI's own functions and, as that script does, the
   extracted bundle root first on ``sys.path`` (its ``scripts`` forgotten afterwards): ``verify_metadata`` against
   the metadata schema (offline: the schema file is given, by default
   ``<repo>/../shared/schemas/meta_schema_20240725.json``), ``verify_net_in_out``, ``ckpt_export`` to TorchScript
   by scripting, as the zoo does, and ``torch.jit.load`` of the export (plus a shipped ``models/model.ts``, if any).

A network that does not script fails (the zoo's ``verify_torchscript`` never traces; the row says whether tracing
would work), unless the bundle is in ``EXCLUDE_VERIFY_TORCHSCRIPT`` (the zoo's ``exclude_verify_torchscript_list``,
with the documented reason), which turns the result into ``EXCLUDED``: never a pass. Results are printed as a table;
the exit status is 1 when any check has status ``FAIL``.

Command line (python-fire)::

    python -m tools.zoo.check_bundles                                      # every bundle, paper-size networks
    python -m tools.zoo.check_bundles --bundles mae_pretrain_ct --device cpu
    python -m tools.zoo.check_bundles --overrides '{"*": {"network_def#num_layers": 2}}'
    python -m tools.zoo.check_bundles --schema /path/to/meta_schema_20240725.json --work_dir /tmp/checked
    python -m tools.zoo.check_bundles --weights_url "https://example.org/bundles/{name}_v{version}_model.pt"

``overrides`` maps a bundle name (or ``"*"`` for every bundle) to config overrides (``{"network_def#hidden_size":
48, "_meta_#network_data_format#inputs#image#spatial_shape": [32, 32, 32]}``), applied to ``configs/inference.json``
and its metadata in every check, e.g. to make the networks small in tests. From Python, :func:`check` returns the
list of :class:`CheckResult`.
"""

from __future__ import annotations

import ast
import functools
import json
import operator
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fire
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from tools.bundle_runner import bundle_importable
from tools.zoo import package_bundles

__all__ = [
    "CheckResult",
    "DEFAULT_SCHEMA",
    "EXCLUDE_VERIFY_TORCHSCRIPT",
    "check",
    "check_bundle",
    "check_sources",
    "check_required_files",
    "create_random_weights",
    "fake_input_shape",
    "format_table",
    "has_failures",
    "package_and_extract",
    "package_rows",
]

REPO_ROOT = package_bundles.REPO_ROOT
DEFAULT_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "meta_schema_20240725.json"

PASS, FAIL, TEMP, EXCLUDED, SKIP, WARN = "PASS", "FAIL", "TEMP", "EXCLUDED", "SKIP", "WARN"

# Bundles whose network cannot be exported to TorchScript, with the reason (the zoo's exclude_verify_torchscript_list;
# the bundle's README must say that TorchScript is not supported). Export is still attempted and reported.
EXCLUDE_VERIFY_TORCHSCRIPT: dict[str, str] = {}

INFERENCE_CONFIG = "configs/inference.json"
METADATA = "configs/metadata.json"
NET_ID = "network_def"
EXPORT_PATH = "models/verify_model.ts"  # the name the zoo's verify_bundle.py exports to


@dataclass
class CheckResult:
    """One row of the results table.

    Attributes:
        bundle: bundle name.
        check: check name.
        status: ``PASS``, ``FAIL``, ``TEMP`` (passed on temporary random weights), ``EXCLUDED`` (documented
            exclusion, not a pass), ``WARN`` or ``SKIP`` (not run because an earlier check failed).
        detail: one line on what was checked or what went wrong.
    """

    bundle: str
    check: str
    status: str
    detail: str = ""


def has_failures(results: Sequence[CheckResult]) -> bool:
    """Whether any result has status ``FAIL``."""
    return any(r.status == FAIL for r in results)


def _short_error(error: BaseException, limit: int = 300) -> str:
    """``Type: first non-empty line of the message``, shortened to ``limit`` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------
# the sources and the packaged bundle
# ---------------------------------------------------------------------------------------------------------------


def check_sources(name: str, bundles_dir: str | os.PathLike) -> list[CheckResult]:
    """Version/changelog, JSON formatting and the ``scripts`` link (to ``<bundles_dir>/../shared``) of a bundle."""
    bundle_dir = Path(bundles_dir) / name
    results = []
    try:
        version = package_bundles.check_version(package_bundles.read_metadata(bundle_dir), name)
        results.append(CheckResult(name, "version", PASS, f"version {version} is in changelog"))
    except (ValueError, OSError) as e:
        results.append(CheckResult(name, "version", FAIL, _short_error(e)))
    files = package_bundles.collect_files(bundle_dir, include_scripts=False)
    json_files = [src for arc, src in files.items() if arc.endswith(".json")]
    errors = package_bundles.json_format_errors(json_files)
    status, detail = (FAIL, "; ".join(errors)) if errors else (PASS, f"{len(json_files)} JSON files 4-space formatted")
    results.append(CheckResult(name, "json_format", status, detail))
    results.append(_check_scripts_link(name, bundle_dir, Path(bundles_dir).resolve().parent / "shared"))
    return results


def _check_scripts_link(name: str, bundle_dir: Path, shared_dir: Path) -> CheckResult:
    """``scripts`` should be a symbolic link to the single shared module (a real folder is a diverging copy)."""
    scripts = bundle_dir / "scripts"
    if not scripts.exists() and not scripts.is_symlink():
        return CheckResult(name, "scripts_link", PASS, "no scripts/ (bundle uses MONAI components only)")
    if not scripts.is_symlink():
        return CheckResult(name, "scripts_link", WARN, f"scripts/ is a real folder, not a link to {shared_dir}")
    if scripts.resolve() != shared_dir.resolve():
        return CheckResult(name, "scripts_link", FAIL, f"scripts -> {scripts.resolve()}, expected {shared_dir}")
    return CheckResult(name, "scripts_link", PASS, f"scripts -> {os.readlink(scripts)}")


def package_and_extract(
    name: str,
    bundles_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    weights_url: str | Mapping[str, str] | None = None,
) -> tuple[Path, list[CheckResult]]:
    """Package a bundle into ``<work_dir>/dist`` and extract the zip into ``<work_dir>/bundles`` as a download would.

    Args:
        name: the bundle.
        bundles_dir: folder holding the bundles.
        work_dir: where the zip and the extracted copy go.
        weights_url: passed to the packager: where ``models/model.pt`` will be published (it then goes to a
            ``large_files.yml`` instead of the zip).

    Returns:
        the extracted bundle root, and the ``package`` row followed by the ``file_sizes`` row and a ``WARN`` row per
        other note of the packager (:func:`package_rows`).

    Raises:
        ValueError: from the packaging checks.
    """
    work_dir = Path(work_dir)
    for stale in (work_dir / "dist", work_dir / "bundles" / name):  # left by an earlier run in the same work_dir
        shutil.rmtree(stale, ignore_errors=True)
    result = package_bundles.package_bundle(name, work_dir / "dist", bundles_dir, weights_url)
    with zipfile.ZipFile(result.zip_path) as zf:
        top = {n.split("/", 1)[0] for n in zf.namelist()}
        if top != {name}:
            raise ValueError(f"the zip's top-level entries are {sorted(top)}, expected only {name}/")
        zf.extractall(work_dir / "bundles")
    return work_dir / "bundles" / name, package_rows(result)


def package_rows(result: package_bundles.PackageResult) -> list[CheckResult]:
    """The rows of a packaged zip: ``package`` (PASS), ``file_sizes`` and the packager's other notes.

    ``file_sizes`` fails when a file in the zip is larger than 1 MB: the zoo's pre-commit hook
    ``check-added-large-files --maxkb=1024`` refuses it (weights belong in ``large_files.yml``); its detail carries
    the packager's notes, which say what to do. Without such a file, each note of the packager is a ``WARN`` row.
    """
    name = result.name
    rows = [CheckResult(name, "package", PASS, f"{result.zip_path.name} sha1 {result.checksum[:12]}; weights: "
                                               f"{result.weights}")]
    limit = package_bundles.LARGE_FILE_THRESHOLD_MB
    with zipfile.ZipFile(result.zip_path) as zf:
        large = [f"{info.filename.split('/', 1)[-1]} ({info.file_size / 2**20:.2f} MB)" for info in zf.infolist()
                 if info.file_size > limit * 2**20]
    if large:
        detail = (f"files over {limit:g} MB in the zip, which the model zoo refuses (pre-commit "
                  f"check-added-large-files --maxkb=1024): {', '.join(large)}")
        notes = "; ".join(result.notes)
        return rows + [CheckResult(name, "file_sizes", FAIL, f"{detail}. {notes}" if notes else detail)]
    rows.append(CheckResult(name, "file_sizes", PASS, f"every file in the zip is at most {limit:g} MB"))
    return rows + [CheckResult(name, "package_note", WARN, note) for note in result.notes]


def check_required_files(name: str, bundle_root: str | os.PathLike) -> list[CheckResult]:
    """The zoo's necessary and preferred files, and a ``scripts`` package that imports as one."""
    root = Path(bundle_root)
    missing = [f for f in (METADATA, "LICENSE", INFERENCE_CONFIG) if not (root / f).is_file()]
    if (root / "scripts").is_dir() and not (root / "scripts" / "__init__.py").is_file():
        missing.append("scripts/__init__.py")
    if missing:
        return [CheckResult(name, "required_files", FAIL, f"missing {missing}")]
    large = [f for f in package_bundles.LARGE_FILES_NAMES if (root / f).is_file()]
    weights = "models/model.pt" if (root / "models" / "model.pt").is_file() else (large[0] if large else "none")
    return [CheckResult(name, "required_files", PASS, f"metadata.json, LICENSE, inference.json; weights: {weights}")]


# ---------------------------------------------------------------------------------------------------------------
# the zoo's checks, with the extracted bundle importable
# ---------------------------------------------------------------------------------------------------------------


def _parser(bundle_root: str | os.PathLike, overrides: Mapping[str, Any]) -> ConfigParser:
    """A ``ConfigParser`` of the bundle's inference config and metadata with ``overrides`` and ``bundle_root``."""
    root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config(str(root / INFERENCE_CONFIG))
    parser.read_meta(str(root / METADATA))
    parser["bundle_root"] = str(root)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def create_random_weights(
    bundle_root: str, overrides: Mapping[str, Any] | None = None, path: str = "models/model.pt", seed: int = 0
) -> str:
    """Save the state dict of a freshly initialised ``network_def`` (inference config + overrides) to ``path``.

    The bundle's ``scripts`` must be importable (see :func:`bundle_importable`). Returns the file written.
    """
    torch.manual_seed(seed)
    network = _parser(bundle_root, overrides or {}).get_parsed_content(NET_ID)
    target = Path(bundle_root) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), target)
    return str(target)


_SHAPE_OPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                                    ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv}


def _shape_entry(entry: int | str, n: int = 1, p: int = 1, any_size: int = 1) -> int:
    """One ``spatial_shape`` entry of the metadata as an int: ``96``, ``"8*n"``, ``"2**p"`` or ``"*"``."""
    if isinstance(entry, int):
        return entry
    if entry.strip() == "*":
        return any_size
    names = {"n": n, "p": p}

    def evaluate(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _SHAPE_OPS:
            return _SHAPE_OPS[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ValueError(f"unsupported spatial_shape entry {entry!r}")

    return int(evaluate(ast.parse(entry, mode="eval").body))


def fake_input_shape(parser: ConfigParser, n: int = 1, p: int = 1, any_size: int = 1) -> list[int]:
    """``[1, C, *spatial]`` of the metadata's ``inputs.image`` (after overrides), as ``verify_net_in_out`` builds it."""
    prefix = "_meta_#network_data_format#inputs#image#"
    channels = int(parser[prefix + "num_channels"])
    return [1, channels, *(_shape_entry(s, n, p, any_size) for s in parser[prefix + "spatial_shape"])]


def _check_weights(root: Path, overrides: Mapping[str, Any], download_large_files: bool) -> tuple[str, str]:
    """Make sure ``models/model.pt`` exists in the extracted copy; temporary random weights when none ship."""
    weights = root / "models" / "model.pt"
    if weights.is_file():
        return PASS, f"models/model.pt ({weights.stat().st_size / 2**20:.2f} MB) ships"
    note = "no weights ship with the bundle"
    large = [f for f in package_bundles.LARGE_FILES_NAMES if (root / f).is_file()]
    if large:
        entries = ConfigParser.load_config_file(str(root / large[0])).get("large_files", [])
        bad = [e for e in entries if not {"path", "url"} <= set(e)]
        if bad or not entries:
            return FAIL, f"{large[0]}: entries need 'path' and 'url': {bad or entries}"
        if download_large_files:
            from monai.bundle import download_large_files as download

            download(bundle_path=str(root))
            return PASS, f"downloaded the files of {large[0]}"
        note = f"{large[0]} lists {[e['path'] for e in entries]}, not downloaded (offline; --download_large_files)"
    create_random_weights(str(root), overrides)
    return TEMP, f"{note}: TEMPORARY random-initialised models/model.pt in the temporary copy"


def _check_metadata(root: Path, schema: str) -> tuple[str, str]:
    url = json.loads((root / METADATA).read_text())["schema"]
    if not Path(schema).is_file():  # offline there is nothing to check against: say so, do not pretend
        return SKIP, (f"no copy of {Path(url).name} at {schema}: verify_metadata needs it offline (download {url} "
                      "and pass --schema)")
    if Path(url).name != Path(schema).name:
        raise ValueError(f"metadata names schema {Path(url).name}, the schema file given is {schema}")
    verify_metadata(meta_file=str(root / METADATA), filepath=schema)
    return PASS, f"valid against {Path(schema).name}"


def _check_net_in_out(root: Path, overrides: Mapping[str, Any], device: str) -> tuple[str, str]:
    verify_net_in_out(net_id=NET_ID, meta_file=str(root / METADATA), config_file=str(root / INFERENCE_CONFIG),
                      device=device, bundle_root=str(root), **overrides)
    shape = fake_input_shape(_parser(root, overrides))
    return PASS, f"input {shape}: output channels and dtype match the metadata"


def _check_export(root: Path, overrides: Mapping[str, Any], excluded: str | None) -> tuple[str, str]:
    """``ckpt_export`` to ``models/verify_model.ts`` by scripting, as the zoo's ``verify_bundle.py`` does (it never
    traces): a network that does not script fails, unless the bundle is a documented exclusion.

    When scripting fails, tracing with the metadata's input shape is tried too, so that the row says whether
    ``ckpt_export --use_trace`` works (what an excluded bundle's README should document); it does not make a pass.

    Returns:
        ``PASS`` (scripted), ``EXCLUDED`` (does not script, documented exclusion) or ``FAIL``, and a detail line.
    """
    common = {"net_id": NET_ID, "filepath": str(root / EXPORT_PATH), "ckpt_file": str(root / "models" / "model.pt"),
              "meta_file": str(root / METADATA), "config_file": str(root / INFERENCE_CONFIG),
              "bundle_root": str(root), **overrides}
    try:
        ckpt_export(**common, use_trace=False)
    except Exception as e:  # any export error is a result, not a crash
        detail = f"scripting fails ({_short_error(e, 400)}); {_trace_export(common, root, overrides)}"
        if excluded:
            return EXCLUDED, f"documented exclusion ({excluded}); {detail}"
        return FAIL, (f"{detail}. The model zoo's verify_torchscript scripts the network and never traces: make it "
                      "scriptable, or list the bundle in EXCLUDE_VERIFY_TORCHSCRIPT and say so in its README")
    detail = "ckpt_export by scripting"
    if excluded:
        detail += f"; listed in EXCLUDE_VERIFY_TORCHSCRIPT ({excluded}) but it scripts: remove it from the list"
    return PASS, detail


def _trace_export(common: Mapping[str, Any], root: Path, overrides: Mapping[str, Any]) -> str:
    """Try ``ckpt_export`` by tracing with the metadata's input shape; returns what happened, in words."""
    try:
        ckpt_export(**common, use_trace=True, input_shape=fake_input_shape(_parser(root, overrides)))
    except Exception as e:  # the trace is information only
        return f"tracing fails too ({_short_error(e, 400)})"
    return "tracing works (ckpt_export --use_trace true)"


def _check_jit_load(root: Path, overrides: Mapping[str, Any]) -> tuple[str, str]:
    """``torch.jit.load`` of the export and a forward pass whose output has the metadata's channel count."""
    parser = _parser(root, overrides)
    input_shape = fake_input_shape(parser)
    model = torch.jit.load(str(root / EXPORT_PATH), map_location="cpu").eval()
    with torch.no_grad():
        out = model(torch.rand(*input_shape))
    channels = parser["_meta_#network_data_format#outputs#pred#num_channels"]
    if not isinstance(out, torch.Tensor) or out.shape[1] != channels:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return FAIL, f"TorchScript output {shape}, expected a tensor with {channels} channels"
    return PASS, f"torch.jit.load + forward {input_shape} -> {list(out.shape)}"


def _check_shipped_ts(root: Path) -> tuple[str, str]:
    torch.jit.load(str(root / "models" / "model.ts"), map_location="cpu")
    return PASS, "models/model.ts loads with torch.jit.load"


def _zoo_checks(
    name: str,
    root: Path,
    schema: str,
    overrides: Mapping[str, Any],
    device: str,
    torchscript_exclusion: str | None,
    download_large_files: bool,
) -> list[CheckResult]:
    """The checks of the zoo's ``verify_bundle.py`` on the extracted bundle ``root``."""
    rows: list[CheckResult] = []

    def step(check_name: str, function: Callable[[], tuple[str, str]]) -> bool:
        start = time.perf_counter()
        try:
            status, detail = function()
        except Exception as e:  # a failing check is a result; the next checks still run where they can
            rows.append(CheckResult(name, check_name, FAIL, _short_error(e)))
            return False
        rows.append(CheckResult(name, check_name, status, f"{detail} [{time.perf_counter() - start:.1f}s]"))
        return status != FAIL

    with bundle_importable(root):
        step("verify_metadata", lambda: _check_metadata(root, schema))
        weights_ok = step("weights", lambda: _check_weights(root, overrides, download_large_files))
        step("verify_net_in_out", lambda: _check_net_in_out(root, overrides, device))
        if not weights_ok:
            rows.append(CheckResult(name, "torchscript", SKIP, "no usable models/model.pt"))
        elif step("torchscript", lambda: _check_export(root, overrides, torchscript_exclusion)):
            if (root / EXPORT_PATH).is_file():
                step("jit_load", lambda: _check_jit_load(root, overrides))
        if (root / "models" / "model.ts").is_file():
            step("model_ts", lambda: _check_shipped_ts(root))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------


def _overrides_for(name: str, overrides: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """``overrides["*"]`` updated with ``overrides[name]``."""
    overrides = overrides or {}
    unknown = [k for k, v in overrides.items() if not isinstance(v, Mapping)]
    if unknown:
        raise ValueError(f"overrides must map a bundle name or '*' to a dict of config overrides, got keys {unknown}")
    return {**overrides.get("*", {}), **overrides.get(name, {})}


def check_bundle(
    name: str,
    work_dir: str | os.PathLike,
    bundles_dir: str | os.PathLike = package_bundles.BUNDLES_DIR,
    schema: str | os.PathLike = DEFAULT_SCHEMA,
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
    torchscript_exclusions: Mapping[str, str] | None = None,
    download_large_files: bool = False,
    weights_url: str | Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """All checks of one bundle; the packaged copy goes to ``work_dir``. See :func:`check` for the arguments."""
    results = check_sources(name, bundles_dir)
    if has_failures(results):
        return results + [CheckResult(name, "package", SKIP, "source checks failed")]
    try:
        bundle_root, rows = package_and_extract(name, bundles_dir, work_dir, weights_url)
    except (ValueError, OSError) as e:
        return results + [CheckResult(name, "package", FAIL, _short_error(e))]
    required = check_required_files(name, bundle_root)
    results += rows + required
    if has_failures(required):  # a file too large for the zoo does not keep the other checks from running
        return results
    exclusions = EXCLUDE_VERIFY_TORCHSCRIPT if torchscript_exclusions is None else torchscript_exclusions
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    return results + _zoo_checks(name, bundle_root, str(Path(schema).resolve()), dict(overrides or {}), device,
                                 exclusions.get(name), download_large_files)


def format_table(results: Sequence[CheckResult], width: int = 150) -> str:
    """The results as a fixed-width text table, details cut to ``width`` characters."""
    header = CheckResult("bundle", "check", "status", "detail")
    rows = [header, *results]
    w_bundle = max(len(r.bundle) for r in rows)
    w_check = max(len(r.check) for r in rows)
    w_status = max(len(r.status) for r in rows)
    lines = []
    for i, r in enumerate(rows):
        detail = r.detail if len(r.detail) <= width else r.detail[: width - 3] + "..."
        lines.append(f"{r.bundle:<{w_bundle}}  {r.check:<{w_check}}  {r.status:<{w_status}}  {detail}")
        if i == 0:
            lines.append("-" * min(len(lines[0]) + 40, w_bundle + w_check + w_status + 6 + width))
    return "\n".join(lines)


def check(
    bundles: str | Sequence[str] | None = None,
    schema: str = str(DEFAULT_SCHEMA),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    device: str | None = None,
    torchscript_exclusions: Mapping[str, str] | None = None,
    download_large_files: bool = False,
    weights_url: str | None = None,
    work_dir: str | None = None,
    bundles_dir: str = str(package_bundles.BUNDLES_DIR),
    quiet: bool = False,
) -> list[CheckResult]:
    """Run the offline model-zoo checks on the bundles (all, or the ones named) and print a table of results.

    Args:
        bundles: bundle names (comma-separated string or list); None checks every bundle.
        schema: the metadata JSON schema file (default ``<repo>/../shared/schemas/meta_schema_20240725.json``);
            its file name must be the one in the metadata's ``schema`` URL. When it is missing, ``verify_metadata``
            is reported as ``SKIP`` with the reason (the check needs the schema, and the network is not used).
        overrides: ``{bundle name or "*": {config id: value}}`` applied to the inference config and metadata.
        device: device of ``verify_net_in_out`` (default: cuda:0 if available, else cpu).
        torchscript_exclusions: ``{bundle: reason}`` of documented TorchScript exclusions; default
            ``EXCLUDE_VERIFY_TORCHSCRIPT``.
        download_large_files: download the files of a bundle's ``large_files.yml`` (needs the network); by default
            a bundle without ``models/model.pt`` is checked on temporary random weights.
        weights_url: where the weights will be published, as for ``package_bundles --weights_url`` (a template with
            ``{name}`` and ``{version}``): a ``models/model.pt`` over 1 MB is then packaged as a ``large_files.yml``
            entry, as it would be published, instead of failing ``file_sizes``.
        work_dir: where the packaged copies go (kept); default a temporary folder, removed afterwards.
        bundles_dir: folder holding the bundles.
        quiet: do not print the table.

    Returns:
        the results, one :class:`CheckResult` per bundle and check.
    """
    names = package_bundles.select_bundles(bundles, bundles_dir)
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="check_bundles_") as tmp:
        for name in names:
            target = Path(work_dir or tmp) / name
            results += check_bundle(name, target, bundles_dir, schema, _overrides_for(name, overrides), device,
                                    torchscript_exclusions, download_large_files, weights_url)
    if not quiet:
        print(format_table(results))
        for r in (r for r in results if r.status in (FAIL, EXCLUDED, WARN) and len(r.detail) > 150):
            print(f"\n{r.bundle} / {r.check} ({r.status}):\n    {r.detail}")
        counts = {s: sum(r.status == s for r in results) for s in (PASS, TEMP, EXCLUDED, WARN, SKIP, FAIL)}
        print(", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no results")
    return results


@functools.wraps(check)
def main(*args: Any, **kwargs: Any) -> None:
    """Command line entry: :func:`check`, exiting with status 1 when any check failed."""
    try:
        results = check(*args, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        print(f"check_bundles: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if has_failures(results) else 0)


if __name__ == "__main__":
    fire.Fire(main, name="tools.zoo.check_bundles")
