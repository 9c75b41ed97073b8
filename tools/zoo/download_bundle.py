"""Download one bundle of this repository and extract it only if its checksum is the published one.

``python -m monai.bundle download --url ...`` extracts whatever the URL serves: a zip altered on the way (or on the
server) is installed, and the code in its ``scripts/`` runs at the next training or inference. This tool reads the
bundle's expected sha1 from a ``model_info.json`` (the file ``tools/zoo/package_bundles.py`` writes beside the zips, in
the model zoo's format), downloads the zip, compares the checksum and extracts nothing when it differs; then it
downloads the bundle's large files (their hashes are checked by MONAI). All of it goes to a temporary folder in
``--bundle_dir`` that becomes the bundle folder only when every file arrived, so a failed download (a wrong checksum,
an unreachable URL, HTTP 404 on the weights) leaves no half-installed bundle behind and can simply be retried.
Command line (python-fire)::

    python -m tools.zoo.download_bundle --name unetr_btcv_seg --model_info https://host/bundles/model_info.json \\
        --bundle_dir bundles/
    python -m tools.zoo.download_bundle --name unetr_btcv_seg --url https://host/bundles/unetr_btcv_seg_v0.2.1.zip \\
        --sha1 <checksum printed by package_bundles.py> --bundle_dir bundles/

The checksum is only as trustworthy as where it comes from: take ``model_info.json`` (or the sha1) from the project's
release page over HTTPS, not from the server that hosts the zip if you do not trust that server.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import fire
from monai.apps.utils import HashCheckError, download_url, extractall
from monai.bundle import download_large_files

__all__ = ["published_entry", "download_bundle", "main"]


LARGE_FILES_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
"""The names MONAI's ``download_large_files`` looks for at a bundle's root."""
URL_SCHEMES = ("http", "https", "ftp", "file")
"""The schemes a ``--model_info`` URL may have; anything else is taken for a local path."""


def _read_json(location: str) -> dict:
    """The JSON object in the file or at the URL ``location`` (a ``model_info.json``).

    Raises:
        ValueError: naming ``location``: no such file (and not a URL), it cannot be read or fetched, it is not valid
            JSON, or it is not a JSON object.
    """
    try:
        if os.path.isfile(location):
            text = Path(location).read_text()
        elif urlparse(location).scheme in URL_SCHEMES:
            with urllib.request.urlopen(location, timeout=60) as response:  # noqa: S310 (a URL given by the user)
                text = response.read().decode()
        else:
            raise ValueError(f"--model_info {location}: no such file (nor an http(s) URL).")
    except (OSError, UnicodeDecodeError) as e:  # urllib's URLError and HTTPError are OSErrors
        raise ValueError(f"--model_info {location}: cannot be read ({e}).") from e
    try:
        content = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model_info {location}: not valid JSON: {e.msg} at line {e.lineno}, column "
                         f"{e.colno}.") from None
    if not isinstance(content, dict):
        raise ValueError(f"--model_info {location}: not a model_info.json (a JSON object of "
                         "{\"<name>_v<version>\": {\"checksum\": ..., \"source\": ...}}).")
    return content


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


def published_entry(model_info: dict, name: str, version: str | None = None,
                    location: str = "model_info.json") -> tuple[str, str, str]:
    """``(version, source url, sha1)`` of ``name`` in a ``model_info.json`` dict (the newest version by default).

    Args:
        model_info: the content of a ``model_info.json``.
        name: the bundle.
        version: the version; default the newest listed.
        location: where ``model_info`` was read from, for the messages.

    Raises:
        KeyError: the bundle (or that version of it) is not listed.
        ValueError: naming ``location`` and the entry: it has no ``source`` or ``checksum`` string.
    """
    versions = {key[len(name) + 2:]: entry for key, entry in model_info.items() if key.startswith(f"{name}_v")}
    if not versions:
        raise KeyError(f"{name} is not in {location} (it lists {sorted(model_info)}).")
    if version is None:
        version = max(versions, key=_version_key)
    if version not in versions:
        raise KeyError(f"{name} version {version} is not in {location} (versions: {sorted(versions)}).")
    entry = versions[version]
    missing = [field for field in ("source", "checksum")
               if not isinstance(entry, dict) or not isinstance(entry.get(field), str) or not entry[field]]
    if missing:
        raise ValueError(f"{location}: the entry {name}_v{version} has no {' and no '.join(missing)} (each entry is "
                         '{"checksum": "<sha1 of the zip>", "source": "<url of the zip>"}).')
    return version, entry["source"], entry["checksum"]


def download_bundle(
    name: str,
    bundle_dir: str = "bundles",
    model_info: str | None = None,
    version: str | None = None,
    url: str | None = None,
    sha1: str | None = None,
    large_files: bool = True,
) -> Path:
    """Download, verify and extract one bundle; returns its folder.

    Args:
        name: the bundle.
        bundle_dir: where the bundle folder is created.
        model_info: path or URL of a ``model_info.json``; gives the zip's URL and checksum.
        version: the version to download (default: the newest in ``model_info``).
        url: the zip's URL, with ``sha1``, instead of ``model_info``.
        sha1: the zip's expected sha1.
        large_files: also download the files of the bundle's ``large_files.yml``.

    Raises:
        ValueError: neither ``model_info`` nor ``url`` and ``sha1`` given, a ``model_info`` that cannot be read or
            lacks the bundle's checksum or source (naming it), or a zip without a ``<name>/`` folder.
        RuntimeError: the checksum differs (nothing is extracted), or a large file cannot be downloaded.
        FileExistsError: the bundle folder exists already.
        OSError: the zip cannot be downloaded (urllib's ``URLError``/``HTTPError``).

    Nothing is left in ``bundle_dir`` when any step fails: the zip and the large files are downloaded into a
    temporary folder there, which is renamed to ``<bundle_dir>/<name>`` when everything arrived.
    """
    if model_info:
        version, url, sha1 = published_entry(_read_json(model_info), name, version, model_info)
    if not url or not sha1:
        raise ValueError("give --model_info, or --url with --sha1: a bundle is only extracted after its checksum.")
    target = Path(bundle_dir) / name
    _check_free(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # everything is downloaded into a temporary folder beside the target, which becomes the bundle by a rename only
    # when all of it arrived: a failure at any step leaves no bundle folder behind
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.download-") as tmp:
        staged = _download_and_extract(name, url, sha1, Path(tmp))
        if large_files:
            _download_large_files(name, staged)
        _check_free(target)
        os.replace(staged, target)
    print(f"{name} {version or ''} verified (sha1 {sha1}) and extracted to {target}")
    return target


def _check_free(target: Path) -> None:
    """Raise ``FileExistsError`` when the bundle folder ``target`` exists already."""
    if target.exists():
        raise FileExistsError(f"{target} exists; remove it or choose another --bundle_dir.")


def _download_and_extract(name: str, url: str, sha1: str, tmp: Path) -> Path:
    """Download the zip at ``url`` into ``tmp``, check its sha1 and extract it there; returns the bundle folder.

    Raises:
        RuntimeError: the checksum differs (nothing is extracted).
        ValueError: the zip holds no ``<name>/`` folder.
        OSError: the zip cannot be downloaded (urllib's ``URLError``/``HTTPError``).
    """
    zip_path = tmp / f"{name}.zip"
    try:
        download_url(url=url, filepath=zip_path, hash_val=sha1, hash_type="sha1", progress=False)
    except HashCheckError as e:
        raise RuntimeError(f"{url} does not have the published sha1 {sha1}: refused, nothing extracted.") from e
    extracted = tmp / "extracted"
    extractall(filepath=zip_path, output_dir=extracted, has_base=True)
    zip_path.unlink()
    if not (extracted / name).is_dir():
        raise ValueError(f"{url} holds no {name}/ folder: not a bundle zip of {name}.")
    return extracted / name


def _download_large_files(name: str, bundle: Path) -> None:
    """Download the files of the bundle's ``large_files.yml`` (if it has one) into ``bundle``, hashes checked.

    Raises:
        RuntimeError: a file cannot be downloaded (e.g. HTTP 404, an unreachable host) or has another hash.
    """
    if not any((bundle / f).is_file() for f in LARGE_FILES_NAMES):
        return
    try:
        download_large_files(bundle_path=str(bundle))
    except (OSError, ValueError) as e:  # urllib's URLError/HTTPError are OSErrors, MONAI's HashCheckError a ValueError
        raise RuntimeError(f"{name}: a file listed in its large_files.yml cannot be downloaded ({e}); the bundle was "
                           "not installed.") from e


@functools.wraps(download_bundle)
def main(*args, **kwargs) -> None:
    """Command line entry: :func:`download_bundle`, with a one-line error and exit status 1 on failure."""
    try:
        download_bundle(*args, **kwargs)
    except (ValueError, RuntimeError, KeyError, OSError) as e:  # OSError: FileExistsError, urllib's URLError/HTTPError
        message = " ".join(str(e).split())  # one line
        print(f"download_bundle: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    fire.Fire(main, name="tools.zoo.download_bundle")
