"""Package the bundles of this repository as the MONAI model zoo publishes them.

For every bundle (every folder under ``bundles/`` with a ``configs/metadata.json``), or the ones named, this writes
``<dist_dir>/<name>_v<version>.zip``: a top-level folder ``<name>/`` holding the bundle's files, with the modules
of the shared code that its configs use copied in as the bundle's ``scripts/`` (in the repository
``bundles/<name>/scripts`` is a symbolic link to ``shared/``; the zip holds real files), and without test, cache or
run-output files (see ``EXCLUDED_DIRS`` and the other ``EXCLUDED_*`` constants). Zips are deterministic (fixed
timestamps and permissions, sorted entries), so the same sources always give the same checksum: packaging a version
again from unchanged sources rewrites the same bytes, while a zip of the same version with other content (or another
checksum in ``model_info.json``), which may have been published, is refused unless ``--overwrite`` is given (bump
the version instead). The zips and ``model_info.json`` are written atomically.
``<dist_dir>/model_info.json`` is then updated in the zoo's format::

    {"<name>_v<version>": {"checksum": "<sha1 of the zip>", "source": "<base_url>/<name>_v<version>.zip"}}

Weights: when ``models/model.pt`` is larger than ``large_file_threshold_mb`` (the zoo's pre-commit limit, 1 MB) and
a ``weights_url`` is given, the zip gets a ``large_files.yml`` (path, url, hash_val, hash_type) instead of the file,
and the file must be uploaded to that URL. Without a URL the weights go into the zip, and the tool says so.

Before packaging, each bundle's ``version`` must be a key of its ``changelog`` and every JSON file must be formatted
as the zoo's ``pretty-format-json --indent=4 --no-sort-keys`` pre-commit hook leaves it; otherwise packaging fails.

Command line (python-fire)::

    python -m tools.zoo.package_bundles                                   # every bundle, into dist/
    python -m tools.zoo.package_bundles --bundles mae_pretrain_ct --dist_dir /tmp/dist
    python -m tools.zoo.package_bundles --base_url https://example.org/bundles \\
        --weights_url "https://example.org/weights/{name}_v{version}_model.pt"

``weights_url`` is a URL template (``{name}`` and ``{version}`` are filled in per bundle) or, from Python, a dict
``{bundle name: URL}``. Without ``base_url`` the ``source`` in ``model_info.json`` is the zip's local ``file://``
URI, which nobody else can download: the tool warns, and a published ``model_info.json`` needs ``--base_url``. From
Python: ``package(bundles=["mae_pretrain_ct"], dist_dir="dist")`` returns one :class:`PackageResult` per
bundle.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import hashlib
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import fire

from shared.utils.atomic import atomic_path, naming_failures, write_text_atomically

__all__ = [
    "REPO_ROOT",
    "PackageResult",
    "discover_bundles",
    "select_bundles",
    "read_metadata",
    "check_version",
    "json_format_errors",
    "check_json_format",
    "is_excluded",
    "scripts_files",
    "collect_files",
    "write_deterministic_zip",
    "package_bundle",
    "check_same_version",
    "update_model_info",
    "package",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"

# timestamp of every zip entry: the zoo's `touch -t 202205300000` before zipping
ZIP_DATE_TIME = (2022, 5, 30, 0, 0, 0)
# folders never packaged, wherever they are: caches, tests, version control
EXCLUDED_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ipynb_checkpoints", ".git", "tests", "test", ".benchmarks"}
)
# top-level folders of a bundle that hold run outputs
EXCLUDED_TOP_DIRS = frozenset({"runs", "eval", "logs", "mlruns", "dist"})
# file name patterns never packaged (dot files include the atomic saver's `.tmp_*.pt`)
EXCLUDED_FILE_PATTERNS = (
    ".*",
    "*.pyc",
    "*.pyo",
    "*~",
    "events.out.tfevents*",
    "test_*.py",
    "*_test.py",
    "conftest.py",
)
# bundle-relative path patterns of training checkpoints (``checkpoint.pt``, pre-training's ``mae_checkpoint.pt``), the
# earlier weights a fresh run keeps (``model.previous-<date>.pt``) and check outputs
EXCLUDED_PATH_PATTERNS = ("models/*checkpoint*.pt", "models/*.previous-*", "models/*.ckpt", "models/verify_model.ts")
WEIGHTS_PATH = "models/model.pt"
SCRIPTS_DIR = "scripts"
# a dotted name in a config that starts with the bundle's scripts package
SCRIPTS_REFERENCE = re.compile(r"\bscripts((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
# a file of the bundle's scripts package named by its path in a config (run by path, e.g. utils/scripts_package.py)
SCRIPTS_FILE_REFERENCE = re.compile(r"\bscripts/((?:[A-Za-z_][A-Za-z0-9_]*/)*[A-Za-z_][A-Za-z0-9_]*\.py)")
LARGE_FILE_THRESHOLD_MB = 1.0
LARGE_FILES_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
HASH_TYPE = "sha256"


@dataclass
class PackageResult:
    """What :func:`package_bundle` wrote for one bundle.

    Attributes:
        name: bundle name (folder name).
        version: bundle version from ``configs/metadata.json``.
        zip_path: the zip written.
        checksum: sha1 of the zip (the zoo's ``model_info.json`` checksum).
        weights: how the weights were handled, in words.
        notes: other things the user should know (e.g. a large file inside the zip).
    """

    name: str
    version: str
    zip_path: Path
    checksum: str
    weights: str
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The ``model_info.json`` key, ``<name>_v<version>``."""
        return f"{self.name}_v{self.version}"


def discover_bundles(bundles_dir: str | os.PathLike = BUNDLES_DIR) -> list[str]:
    """Names of the bundles under ``bundles_dir``: every folder with a ``configs/metadata.json``, sorted."""
    root = Path(bundles_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())


def select_bundles(bundles: str | Sequence[str] | None, bundles_dir: str | os.PathLike = BUNDLES_DIR) -> list[str]:
    """The bundles to work on: all of them when ``bundles`` is None, else the ones named.

    Args:
        bundles: None, a name, a comma-separated string of names or a sequence of names.
        bundles_dir: folder holding the bundles.

    Raises:
        ValueError: when a name is not a bundle (no ``configs/metadata.json``) or no bundle is found.
    """
    available = discover_bundles(bundles_dir)
    if bundles is None:
        if not available:
            raise ValueError(f"no bundle (folder with configs/metadata.json) under {bundles_dir}.")
        return available
    names = bundles.split(",") if isinstance(bundles, str) else [str(b) for b in bundles]
    names = [n.strip() for n in names if n.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"not a bundle under {bundles_dir}: {unknown}; bundles found: {available}.")
    return names


def read_metadata(bundle_dir: str | os.PathLike) -> dict:
    """The bundle's ``configs/metadata.json`` as a dict."""
    with open(Path(bundle_dir) / "configs" / "metadata.json", encoding="utf-8") as f:
        return json.load(f)


def check_version(metadata: Mapping, name: str = "") -> str:
    """Return ``metadata["version"]`` after checking that it is a key of ``metadata["changelog"]``.

    Raises:
        ValueError: when ``version`` or ``changelog`` is missing or the version has no changelog entry.
    """
    version = metadata.get("version")
    changelog = metadata.get("changelog")
    if not isinstance(version, str) or not version:
        raise ValueError(f"{name}: configs/metadata.json has no 'version' string.")
    if not isinstance(changelog, Mapping) or version not in changelog:
        keys = sorted(changelog) if isinstance(changelog, Mapping) else changelog
        raise ValueError(
            f"{name}: version {version!r} is not a key of 'changelog' ({keys}) in configs/metadata.json; "
            "add a changelog entry for it."
        )
    return version


def _pretty_json(text: str) -> str:
    """``text`` as the zoo's ``pretty-format-json --autofix --no-sort-keys --indent=4`` hook writes it."""
    return json.dumps(json.loads(text), indent=4, ensure_ascii=True) + "\n"


def json_format_errors(files: Iterable[str | os.PathLike]) -> list[str]:
    """Messages for the JSON files that are invalid or not 4-space formatted (empty list when all are fine)."""
    errors = []
    for path in sorted(Path(f) for f in files):
        text = path.read_text(encoding="utf-8")
        try:
            pretty = _pretty_json(text)
        except json.JSONDecodeError as e:
            errors.append(f"{path}: invalid JSON ({e})")
            continue
        if text != pretty:
            line = next(
                (i + 1 for i, (a, b) in enumerate(zip(text.splitlines(), pretty.splitlines())) if a != b),
                min(len(text.splitlines()), len(pretty.splitlines())) + 1,
            )
            errors.append(f"{path}: not formatted as 4-space indented JSON (first difference at line {line})")
    return errors


def check_json_format(bundle_dir: str | os.PathLike) -> None:
    """Check every JSON file that would be packaged from ``bundle_dir``.

    Raises:
        ValueError: listing the offending files (the zoo's pre-commit hook
            ``pretty-format-json --autofix --no-sort-keys --indent=4`` fixes them).
    """
    files = [src for arc, src in collect_files(bundle_dir, include_scripts=False).items() if arc.endswith(".json")]
    errors = json_format_errors(files)
    if errors:
        raise ValueError(
            "JSON files must be 4-space indented with a final newline, as the model zoo's pre-commit "
            "`pretty-format-json --indent=4 --no-sort-keys` leaves them:\n  " + "\n  ".join(errors)
        )


def is_excluded(rel_path: str | PurePosixPath) -> bool:
    """Whether a bundle-relative path (``/``-separated) is a test, cache or run-output file that is not packaged."""
    path = PurePosixPath(rel_path)
    if any(part in EXCLUDED_DIRS for part in path.parts[:-1]):
        return True
    if len(path.parts) > 1 and path.parts[0] in EXCLUDED_TOP_DIRS:
        return True
    if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in EXCLUDED_FILE_PATTERNS):
        return True
    return any(fnmatch.fnmatchcase(str(path), pattern) for pattern in EXCLUDED_PATH_PATTERNS)


def _module_file(scripts_dir: Path, parts: Sequence[str]) -> Path | None:
    """The file of module ``parts`` (relative to ``scripts_dir``): ``a/b.py`` or ``a/b/__init__.py``."""
    if not parts:
        return scripts_dir / "__init__.py"
    module, package = scripts_dir.joinpath(*parts[:-1], parts[-1] + ".py"), scripts_dir.joinpath(*parts, "__init__.py")
    for candidate in (module, package):
        if candidate.is_file():
            return candidate
    return None


def _relative_imports(scripts_dir: Path, module: Path) -> set[Path]:
    """The files of the modules that ``module`` imports relatively (``from .x import y``, ``from ..p import q``)."""
    package = list(module.relative_to(scripts_dir).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        for target in [base] + [base + [alias.name] for alias in node.names]:  # `from . import mod` names modules
            path = _module_file(scripts_dir, target)
            if path is not None:
                found.add(path)
    return found


def _named_modules(config: Path, scripts_dir: Path) -> set[Path]:
    """The files of the ``scripts`` modules that ``config`` names, by dotted name (``scripts.networks.mae.X`` ->
    ``networks/mae.py``) or by path (``scripts/utils/scripts_package.py``).

    Raises:
        ValueError: a name or path that is no module of ``scripts_dir``.
    """
    text, found = config.read_text(encoding="utf-8"), set()
    for dotted in SCRIPTS_REFERENCE.findall(text):
        parts = dotted.strip(".").split(".")
        module = next(filter(None, (_module_file(scripts_dir, parts[:end]) for end in range(len(parts), 0, -1))), None)
        if module is None:
            raise ValueError(f"{config} names scripts{dotted}, but {scripts_dir} has no such module.")
        found.add(module)
    for relative in SCRIPTS_FILE_REFERENCE.findall(text):
        if not (scripts_dir / relative).is_file():
            raise ValueError(f"{config} names scripts/{relative}, but {scripts_dir} has no such file.")
        found.add(scripts_dir / relative)
    return found


def scripts_files(bundle_dir: str | os.PathLike) -> dict[str, Path]:
    """The files of the bundle's ``scripts`` package that its configs use: every module a config names
    (``scripts.networks.mae.MaskedAutoencoderViT`` -> ``networks/mae.py``, or by path, see :func:`_named_modules`),
    the modules those import relatively,
    and the ``__init__.py`` of every package on the way. Returned as ``{"scripts/<path>": source file}``.

    Raises:
        ValueError: a config names a ``scripts`` module that does not exist.
    """
    root = Path(bundle_dir)
    scripts_dir = root / SCRIPTS_DIR
    wanted: set[Path] = set()
    for config in sorted((root / "configs").glob("*.json")):
        wanted |= _named_modules(config, scripts_dir)
    todo = list(wanted)
    while todo:  # every module needs what it imports and the __init__.py of its packages (which may import too)
        module = todo.pop()
        packages = {scripts_dir / parent / "__init__.py" for parent in module.relative_to(scripts_dir).parents}
        for path in (_relative_imports(scripts_dir, module) | {p for p in packages if p.is_file()}) - wanted:
            wanted.add(path)
            todo.append(path)
    return {f"{SCRIPTS_DIR}/{p.relative_to(scripts_dir).as_posix()}": p for p in sorted(wanted) if p.is_file()}


def collect_files(bundle_dir: str | os.PathLike, include_scripts: bool = True) -> dict[str, Path]:
    """The files to package, as ``{bundle-relative posix path: source file}``, sorted by path.

    ``scripts/`` (in the repository a symbolic link to ``shared/``) becomes a real folder holding only the modules
    the bundle's configs use (:func:`scripts_files`; left out when ``include_scripts`` is False); excluded files
    (:func:`is_excluded`) and folders are skipped.
    """
    root = Path(bundle_dir)
    files: dict[str, Path] = {}
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith(".") and d != SCRIPTS_DIR)
        for name in names:
            rel = (rel_folder / name).as_posix()
            if not is_excluded(rel) and os.path.isfile(os.path.join(folder, name)) and rel != SCRIPTS_DIR:
                files[rel] = Path(folder, name)
    if include_scripts:
        files.update(scripts_files(root))
    return dict(sorted(files.items()))


def _file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_deterministic_zip(zip_path: str | os.PathLike, entries: Mapping[str, bytes | os.PathLike]) -> str:
    """Write a zip whose bytes depend only on the entries: sorted names, fixed timestamps and permissions.

    Args:
        zip_path: zip file to write (its folder is created).
        entries: ``{name in the zip: file path or bytes}``.

    Returns:
        the sha1 of the zip written.
    """
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in sorted(entries):
            source = entries[name]
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            executable = not isinstance(source, bytes) and os.access(source, os.X_OK)
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.create_system = 3  # unix, so that the permissions below are used on extraction
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    return _file_digest(zip_path, "sha1")


def _weights_url_for(weights_url: str | Mapping[str, str] | None, name: str, version: str) -> str | None:
    """The weights URL of one bundle from a template string or a ``{name: url}`` mapping, validated.

    Raises:
        ValueError: for a URL that is not an absolute http(s)/ftp URL, or a template with unknown fields.
    """
    if weights_url is None:
        return None
    if isinstance(weights_url, Mapping):
        url = weights_url.get(name)
        if url is None:
            return None
    else:
        try:
            url = str(weights_url).format(name=name, version=version)
        except (KeyError, IndexError) as e:
            raise ValueError(f"weights_url {weights_url!r}: only {{name}} and {{version}} can be filled in.") from e
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https", "ftp") or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"{name}: weights URL {url!r} is not an absolute http(s) URL of a file.")
    if any(c in url for c in "<>{} "):
        raise ValueError(f"{name}: weights URL {url!r} looks like a placeholder; give the real download URL.")
    return url


def _large_files_yaml(entries: Sequence[Mapping[str, str]]) -> bytes:
    """``large_files.yml`` content in the zoo's layout; values are written as (YAML-compatible) JSON strings."""
    lines = ["large_files:"]
    for entry in entries:
        keys = ("path", "url", "hash_val", "hash_type")
        lines.append(f"  - {keys[0]}: {json.dumps(entry[keys[0]])}")
        lines.extend(f"    {key}: {json.dumps(entry[key])}" for key in keys[1:])
    return ("\n".join(lines) + "\n").encode()


def _existing_large_files(files: Mapping[str, Path]) -> list[str]:
    """Names of the large-files lists (``large_files.yml``...) the bundle already has at its root."""
    return [name for name in LARGE_FILES_NAMES if name in files]


def _plan_weights(
    name: str, version: str, files: dict[str, Path], weights_url: str | Mapping[str, str] | None, threshold_mb: float
) -> tuple[dict[str, bytes], str, list[str]]:
    """Decide what happens to ``models/model.pt``; removes it from ``files`` when it goes to ``large_files.yml``.

    Returns:
        extra zip entries (bundle-relative name -> bytes), a sentence on the weights, notes.
    """
    url = _weights_url_for(weights_url, name, version)
    existing = _existing_large_files(files)
    weights = files.get(WEIGHTS_PATH)
    if existing:
        if url is not None:
            raise ValueError(f"{name}: the bundle already has {existing}; do not also give a weights_url for it.")
        files.pop(WEIGHTS_PATH, None)
        return {}, f"listed in the bundle's own {existing[0]} (downloaded by the user)", []
    if weights is None:
        return {}, "no models/model.pt in the bundle: the zip holds no weights", []
    size_mb = weights.stat().st_size / 2**20
    if size_mb > threshold_mb and url is not None:
        files.pop(WEIGHTS_PATH)
        entry = {"path": WEIGHTS_PATH, "url": url, "hash_val": _file_digest(weights, HASH_TYPE), "hash_type": HASH_TYPE}
        return (
            {"large_files.yml": _large_files_yaml([entry])},
            f"in large_files.yml ({size_mb:.1f} MB; upload {weights} to {url})",
            [],
        )
    sentence = f"models/model.pt included in the zip ({size_mb:.2f} MB)"
    notes = []
    if size_mb > threshold_mb:
        notes.append(
            f"{sentence}: no weights_url given; the model zoo wants files over {threshold_mb:g} MB in large_files.yml"
        )
    return {}, sentence, notes


def _other_large_files(files: Mapping[str, Path], threshold_mb: float) -> list[str]:
    """Notes on the files going into the zip, other than ``models/model.pt``, that the model zoo would refuse for their
    size (e.g. the MAE weights ``models/mae.pt`` that pre-training writes)."""
    notes = []
    for arc, path in sorted(files.items()):
        size_mb = path.stat().st_size / 2**20
        if arc != WEIGHTS_PATH and size_mb > threshold_mb:
            notes.append(f"{arc} included in the zip ({size_mb:.2f} MB): the model zoo wants files over "
                         f"{threshold_mb:g} MB in large_files.yml; remove it from the bundle before packaging, or "
                         "upload it and list it there")
    return notes


def package_bundle(
    name: str,
    dist_dir: str | os.PathLike,
    bundles_dir: str | os.PathLike = BUNDLES_DIR,
    weights_url: str | Mapping[str, str] | None = None,
    large_file_threshold_mb: float = LARGE_FILE_THRESHOLD_MB,
    overwrite: bool = False,
) -> PackageResult:
    """Check one bundle and write ``<dist_dir>/<name>_v<version>.zip`` (atomically).

    Args:
        name: bundle folder name under ``bundles_dir``.
        dist_dir: output folder.
        bundles_dir: folder holding the bundles.
        weights_url: URL (template with ``{name}``/``{version}``, or ``{name: url}``) where ``models/model.pt``
            will be downloadable; only used when the file is larger than ``large_file_threshold_mb``.
        large_file_threshold_mb: size above which weights go to ``large_files.yml`` (the zoo's 1 MB limit).
        overwrite: replace a zip of the same version whose content differs (see :func:`check_same_version`).

    Raises:
        ValueError: version not in changelog, badly formatted JSON, missing ``scripts/__init__.py``, bad URL, or a
            zip of the same version with other content (without ``overwrite``).
    """
    with _zip_written(name, dist_dir, bundles_dir, weights_url, large_file_threshold_mb) as result:
        check_same_version([result], dist_dir, overwrite)
    return result


def check_same_version(results: Sequence[PackageResult], dist_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to replace a packaged version with other content: a zip of the same name (or the version's entry in
    ``<dist_dir>/model_info.json``) with another checksum may have been published already. The packaging is
    deterministic, so the same sources give the same checksum and pass quietly.

    Raises:
        ValueError: without ``overwrite``, naming every zip whose content would change.
    """
    if overwrite:
        return
    info_path = Path(dist_dir) / "model_info.json"
    info = _read_model_info(info_path) if info_path.is_file() else {}
    changed = []
    for result in results:
        earlier = {info.get(result.key, {}).get("checksum")}
        if result.zip_path.is_file():
            earlier.add(_file_digest(result.zip_path, "sha1"))
        earlier -= {None, result.checksum}
        if earlier:
            changed.append(f"{result.zip_path} (sha1 {', '.join(sorted(earlier))}, now {result.checksum})")
    if changed:
        raise ValueError(f"version already packaged with other content: {'; '.join(changed)}. A published version "
                         "must not change: bump the version (and its changelog) in configs/metadata.json, or pass "
                         "--overwrite to replace it.")


def _read_model_info(info_path: Path) -> dict:
    """The content of ``model_info.json``.

    Raises:
        ValueError: naming the file, when it is not a JSON object.
    """
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{info_path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.") from None
    if not isinstance(info, dict):
        raise ValueError(f"{info_path} is not a JSON object of {{'<name>_v<version>': {{...}}}}.")
    return info


@contextmanager
def _zip_written(
    name: str,
    dist_dir: str | os.PathLike,
    bundles_dir: str | os.PathLike,
    weights_url: str | Mapping[str, str] | None,
    large_file_threshold_mb: float,
) -> Iterator[PackageResult]:
    """Check one bundle and write its zip to a temporary file beside ``<dist_dir>/<name>_v<version>.zip``, which
    replaces that zip when the block ends without an error (and is removed otherwise); yields what will be written."""
    bundle_dir = Path(bundles_dir) / name
    version = check_version(read_metadata(bundle_dir), name)
    check_json_format(bundle_dir)
    files = collect_files(bundle_dir)
    if any(arc.startswith("scripts/") for arc in files) and "scripts/__init__.py" not in files:
        raise ValueError(f"{name}: scripts/ has no __init__.py; configs cannot import it as a package.")
    extra, weights, notes = _plan_weights(name, version, files, weights_url, large_file_threshold_mb)
    notes += _other_large_files(files, large_file_threshold_mb)
    entries: dict[str, bytes | os.PathLike] = {f"{name}/{arc}": src for arc, src in files.items()}
    entries.update({f"{name}/{arc}": data for arc, data in extra.items()})
    zip_path = Path(dist_dir) / f"{name}_v{version}.zip"
    with atomic_path(zip_path, ".zip") as tmp:
        with naming_failures(zip_path):
            checksum = write_deterministic_zip(tmp, entries)
        yield PackageResult(name, version, zip_path, checksum, weights, tuple(notes))


def update_model_info(
    dist_dir: str | os.PathLike, results: Iterable[PackageResult], base_url: str | None = None
) -> Path:
    """Add the packaged versions to ``<dist_dir>/model_info.json`` (existing entries of other versions are kept).

    Args:
        dist_dir: folder holding the zips and ``model_info.json``.
        results: what :func:`package_bundle` returned.
        base_url: URL of the folder the zips will be served from; None gives each zip's local ``file://`` URI
            (for trying a download on this machine only), with a warning.

    Returns:
        the path of ``model_info.json``.
    """
    info_path = Path(dist_dir) / "model_info.json"
    info = _read_model_info(info_path) if info_path.is_file() else {}
    for result in results:
        previous = info.get(result.key, {}).get("checksum")
        if previous not in (None, result.checksum):
            print(f"NOTE: {result.key} was in {info_path} with another checksum: the content changed, bump the "
                  "version (and changelog) before publishing", file=sys.stderr)
        if base_url:
            source = f"{base_url.rstrip('/')}/{result.zip_path.name}"
        else:
            source = result.zip_path.resolve().as_uri()
        info[result.key] = {"checksum": result.checksum, "source": source}
    write_text_atomically(json.dumps(dict(sorted(info.items())), indent=4) + "\n", info_path)
    if not base_url:
        print(f"WARNING: {info_path}: no --base_url, so each source is a local file:// URI of this machine and "
              "nobody else can download the zips; before publishing, package again with --base_url <the URL the zips "
              "will be served from>", file=sys.stderr)
    return info_path


def package(
    bundles: str | Sequence[str] | None = None,
    dist_dir: str = str(REPO_ROOT / "dist"),
    base_url: str | None = None,
    weights_url: str | Mapping[str, str] | None = None,
    large_file_threshold_mb: float = LARGE_FILE_THRESHOLD_MB,
    bundles_dir: str = str(BUNDLES_DIR),
    quiet: bool = False,
    overwrite: bool = False,
) -> list[PackageResult]:
    """Package the bundles (all, or the ones named) into ``dist_dir`` and update its ``model_info.json``.

    Args:
        bundles: bundle names (comma-separated string or list); None packages every bundle.
        dist_dir: output folder (default ``<repo>/dist``).
        base_url: URL the zips will be published under, for ``model_info.json``'s ``source``; without it each
            source is the zip's local ``file://`` URI, which only this machine can download (a warning says so).
        weights_url: where ``models/model.pt`` will be downloadable: a template with ``{name}`` and ``{version}``,
            or ``{bundle name: url}``. Without it the weights are packaged in the zip.
        large_file_threshold_mb: weights larger than this go to ``large_files.yml`` when a URL is known.
        bundles_dir: folder holding the bundles (default ``<repo>/bundles``).
        quiet: do not print the summary.
        overwrite: replace zips of the same version whose content differs; without it they are refused (a version
            may have been published already), see :func:`check_same_version`.

    Returns:
        one :class:`PackageResult` per bundle. Nothing is written when any bundle fails its checks.
    """
    names = select_bundles(bundles, bundles_dir)
    for name in names:  # check everything first, so that a bad bundle leaves no partial dist/
        bundle_dir = Path(bundles_dir) / name
        check_version(read_metadata(bundle_dir), name)
        check_json_format(bundle_dir)
    with ExitStack() as written:  # every zip is replaced only when none of them is refused
        results = [written.enter_context(_zip_written(name, dist_dir, bundles_dir, weights_url,
                                                      large_file_threshold_mb)) for name in names]
        check_same_version(results, dist_dir, overwrite)
    info_path = update_model_info(dist_dir, results, base_url)
    if not quiet:
        for r in results:
            print(f"{r.zip_path}  sha1 {r.checksum}\n    weights: {r.weights}")
            for note in r.notes:
                print(f"    NOTE: {note}")
        print(f"{info_path} updated")
    return results


@functools.wraps(package)
def main(*args, **kwargs) -> None:
    """Command line entry: :func:`package`, with a one-line error and exit status 1 when a bundle fails a check."""
    try:
        package(*args, **kwargs)
    except ValueError as e:
        print(f"package_bundles: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    fire.Fire(main, name="tools.zoo.package_bundles")
