"""Helper of ``tools/zoo/monailabel_integration.sh``: prepares bundles and test images for a MONAI Label
``monaibundle`` app and checks a running server. Run it from the repository root with the MONAI Label environment's
Python (it needs monai, nibabel, numpy, requests; torch only for ``weights``).

Subcommands::

    python -m tools.zoo.monailabel_client weights BUNDLE_DIR          # write models/model.pt if missing (random init)
    python -m tools.zoo.monailabel_client image BUNDLE_DIR OUT_DIR ID  # synthetic input OUT_DIR/ID.{nii.gz,png}
    python -m tools.zoo.monailabel_client check --url http://127.0.0.1:8000 --case NAME=IMAGE_ID[:FILE] ...

``check`` waits for ``/info/``, compares every model's labels with its metadata's ``channel_def``, POSTs
``/infer/<name>`` and verifies the answer (segmentation: a label map with the input's spatial shape; classification:
one score per class), prints a summary table and exits non-zero if anything failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path


def _metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


def _first(mapping: dict) -> tuple[str, dict]:
    return next(iter(mapping.items()))


def expected_labels(bundle: Path) -> dict[str, int]:
    """Labels MONAI Label derives from the metadata (``tasks/infer/bundle.py``): the first output's
    ``channel_def`` names, lower-cased, without "background"."""
    _, pred = _first(_metadata(bundle)["network_data_format"]["outputs"])
    return {v.lower(): int(k) for k, v in pred.get("channel_def", {}).items() if v.lower() != "background"}


def task_type(bundle_name: str) -> str:
    """The task type MONAI Label gives a bundle from its folder name (``BundleInferTask._get_type``)."""
    name = bundle_name.lower()
    for kind in ("deepedit", "deepgrow", "detection", "segmentation", "classification"):
        if kind in name:
            return kind
    return "segmentation"


# ---------------------------------------------------------------------------------------------------------------
# weights


def make_weights(bundle: Path) -> str:
    """Write ``models/model.pt`` (the bundle's ``network_def``, randomly initialised, seed 0) if it is missing."""
    target = bundle / "models" / "model.pt"
    if target.is_file():
        return f"{target}: present, used as is"
    import torch
    from monai.bundle import ConfigParser

    from tools.bundle_runner import bundle_importable

    config = bundle / "configs" / "inference.json"
    if not config.is_file():
        config = bundle / "configs" / "inference.yaml"
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(bundle)
    with bundle_importable(bundle):
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def", instantiate=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp_", suffix=".pt")
    with os.fdopen(fd, "wb") as f:
        torch.save(network.state_dict(), f)
    os.replace(tmp, target)
    count = sum(p.numel() for p in network.parameters())
    return (
        f"{target}: written, RANDOMLY INITIALISED {type(network).__name__} ({count / 1e6:.1f}M parameters, seed 0); "
        "predictions are meaningless, only the serving path is tested"
    )


# ---------------------------------------------------------------------------------------------------------------
# images


def _phantom(shape: tuple[int, ...], rng) -> "np.ndarray":  # noqa: F821
    """A smooth phantom in [0, 1]: a large ellipsoid body with a few brighter blobs inside."""
    import numpy as np

    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    body = sum((g / 0.8) ** 2 for g in grids) <= 1.0
    image = body * 0.3
    for _ in range(4):
        centre = rng.uniform(-0.4, 0.4, len(shape))
        radius = rng.uniform(0.1, 0.25)
        blob = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2
        image = np.where(blob & body, rng.uniform(0.5, 1.0), image)
    return image.astype(np.float32)


def make_image(bundle: Path, out_dir: Path, image_id: str, size: list[int] | None = None, seed: int = 0) -> dict:
    """Write ``<out_dir>/<image_id>.{nii.gz,png}``, a synthetic input for ``bundle`` (its metadata's input channels,
    dimensions and modality).

    3D: NIfTI, channels last for several channels (the MSD layout), 1.5 x 1.5 x 2 mm for CT and 1 mm otherwise,
    CT in Hounsfield units. 2D: 8-bit PNG (grey, or RGB for 3 channels).
    Returns the written file's description (``path``, ``spatial_shape``, ``channels``).
    """
    import numpy as np

    _, image = _first(_metadata(bundle)["network_data_format"]["inputs"])
    channels = int(image.get("num_channels", 1))
    dims = len(image.get("spatial_shape") or [0, 0, 0])
    modality = str(image.get("modality", "")).upper()
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{image_id}.{'png' if dims == 2 else 'nii.gz'}"
    if dims == 2:
        from PIL import Image

        shape = tuple(size or (256, 256))
        planes = [(_phantom(shape, rng) * 255).astype(np.uint8) for _ in range(min(channels, 3))]
        array = planes[0] if len(planes) == 1 else np.stack([planes[i % len(planes)] for i in range(3)], -1)
        Image.fromarray(array).save(out)
        return {"path": str(out), "spatial_shape": list(shape), "channels": channels}

    import nibabel as nib

    shape = tuple(size or (80, 72, 56))
    if modality == "CT":
        spacing = (1.5, 1.5, 2.0)
        data = (_phantom(shape, rng) * 1200 - 1000).astype(np.int16)  # air -1000 HU, body -640, organs up to 200
    else:
        spacing = (1.0, 1.0, 1.0)
        volumes = [_phantom(shape, np.random.default_rng(seed + c)) * 1000 for c in range(channels)]
        data = np.stack(volumes, -1).astype(np.float32) if channels > 1 else volumes[0].astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-s * n / 2 for s, n in zip(spacing, shape)]
    nib.save(nib.Nifti1Image(data, affine), str(out))
    return {"path": str(out), "spatial_shape": list(shape), "channels": channels}


# ---------------------------------------------------------------------------------------------------------------
# server checks


def wait_for_info(url: str, timeout: float) -> dict:
    import requests

    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            response = requests.get(f"{url}/info/", timeout=10)
            if response.ok:
                return response.json()
            last = f"HTTP {response.status_code}"
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(2)
    raise TimeoutError(f"{url}/info/ did not answer within {timeout:.0f} s (last: {last})")


def _read_label(content: bytes, suffix: str):
    import nibabel as nib
    import numpy as np

    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
        f.write(content)
        name = f.name
    try:
        if suffix in (".png", ".jpg"):
            from PIL import Image

            return np.asarray(Image.open(name))
        return np.asarray(nib.load(name).dataobj)
    finally:
        os.remove(name)


def check_case(url: str, name: str, image_id: str, bundle: Path, image_file: Path | None, info: dict, device: str,
               timeout: float) -> dict:
    """Check one model: labels in /info, then /infer; return a result row."""
    import numpy as np
    import requests

    row = {"model": name, "ok": False}
    model_info = info.get("models", {}).get(name)
    if model_info is None:
        row["error"] = f"not in /info models ({sorted(info.get('models', {}))}); see the server log"
        return row
    expected = expected_labels(bundle)
    row.update(type=model_info.get("type"), dimension=model_info.get("dimension"), version=model_info.get("version"),
               labels=model_info.get("labels"))
    labels_ok = model_info.get("labels") == expected
    if not labels_ok:
        row["error"] = f"labels {model_info.get('labels')} != metadata channel_def {expected}"
    kind = model_info.get("type") or task_type(name)
    params = {"device": device}
    start = time.time()
    response = requests.post(
        f"{url}/infer/{name}",
        params={"image": image_id, "output": "json" if kind == "classification" else "image"},
        files={"params": (None, json.dumps(params))},
        timeout=timeout,
    )
    row["infer_seconds"] = round(time.time() - start, 1)
    if not response.ok:
        row["error"] = f"/infer/{name}: HTTP {response.status_code}: {response.text[:400]}"
        return row
    if kind == "classification":
        prediction = response.json().get("prediction")
        row["prediction"] = prediction
        ok = isinstance(prediction, list) and len(prediction) == len(expected or prediction) and all(
            math.isfinite(p.get("score", float("nan"))) for p in prediction
        )
        if not ok:
            row["error"] = f"classification answer {str(response.json())[:300]}"
        row["ok"] = ok and labels_ok
        return row
    suffix = ".png" if image_file is not None and image_file.suffix in (".png", ".jpg") else ".nii.gz"
    label = _read_label(response.content, suffix)
    values = np.unique(label)
    row["output_shape"] = list(label.shape)
    row["label_values"] = [int(v) for v in values[:20]]
    input_shape = None
    if image_file is not None:
        if suffix == ".png":
            from PIL import Image

            input_shape = list(np.asarray(Image.open(image_file)).shape[:2])
        else:
            import nibabel as nib

            input_shape = list(nib.load(str(image_file)).shape[:3])
    row["input_shape"] = input_shape
    allowed = set(expected.values()) | {0}
    shape_ok = input_shape is None or list(label.shape[: len(input_shape)]) == input_shape
    values_ok = np.issubdtype(label.dtype, np.integer) or np.all(np.equal(np.mod(values, 1), 0))
    if not shape_ok:
        row["error"] = f"label map shape {list(label.shape)} != input spatial shape {input_shape}"
    elif not values_ok:
        row["error"] = f"label map is not integer valued: {values[:10]}"
    elif not set(int(v) for v in values) <= allowed:
        row["warning"] = f"label values {sorted(int(v) for v in values)} outside channel_def indices {sorted(allowed)}"
    row["ok"] = labels_ok and shape_ok and bool(values_ok)
    return row


def check(url: str, cases: list[str], timeout: float = 900, infer_timeout: float = 1800, device: str = "cpu",
          app_models: str = "", summary_json: str = "") -> int:
    info = wait_for_info(url, timeout)
    print(f"/info/: name={info.get('name')!r} models={sorted(info.get('models', {}))}", flush=True)
    rows = []
    for case in cases:
        name, _, rest = case.partition("=")
        image_id, _, image_file = rest.partition(":")
        bundle = Path(app_models) / name
        try:
            rows.append(check_case(url, name, image_id, bundle, Path(image_file) if image_file else None, info,
                                   device, infer_timeout))
        except Exception as e:  # report and go on with the next model
            rows.append({"model": name, "ok": False, "error": f"{type(e).__name__}: {e}"})
        print(json.dumps(rows[-1]), flush=True)
    print("\nSUMMARY")
    for row in rows:
        status = "PASS" if row["ok"] else "FAIL"
        details = ", ".join(
            f"{k}={row[k]}" for k in ("type", "dimension", "version", "input_shape", "output_shape", "label_values",
                                      "infer_seconds") if k in row
        )
        print(f"  {status} {row['model']}: {details}")
        print(f"       labels={row.get('labels')}")
        if "prediction" in row:
            print(f"       prediction={row['prediction']}")
        for key in ("error", "warning"):
            if key in row:
                print(f"       {key.upper()}: {row[key]}")
    if summary_json:
        Path(summary_json).write_text(json.dumps(rows, indent=2))
    return 0 if rows and all(r["ok"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools.zoo.monailabel_client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("weights", help="write models/model.pt (random init) when missing")
    p.add_argument("bundle", type=Path)
    p = sub.add_parser("image", help="write a synthetic input image <out_dir>/<image_id>.{nii.gz,png} for a bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("image_id")
    p.add_argument("--size", type=int, nargs="+")
    p = sub.add_parser("labels", help="print the labels MONAI Label will report for a bundle")
    p.add_argument("bundle", type=Path)
    p = sub.add_parser("check", help="check a running server")
    p.add_argument("--url", required=True)
    p.add_argument("--case", action="append", required=True, help="NAME=IMAGE_ID[:IMAGE_FILE]")
    p.add_argument("--app-models", required=True, help="the app's model/ folder (bundle metadata)")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for /info/")
    p.add_argument("--infer-timeout", type=float, default=1800)
    p.add_argument("--device", default="cpu")
    p.add_argument("--summary-json", default="")
    args = parser.parse_args(argv)
    if args.command == "weights":
        print(make_weights(args.bundle))
    elif args.command == "image":
        print(json.dumps(make_image(args.bundle, args.out_dir, args.image_id, args.size)))
    elif args.command == "labels":
        print(json.dumps({"type": task_type(args.bundle.name), "labels": expected_labels(args.bundle)}))
    else:
        return check(args.url, args.case, args.timeout, args.infer_timeout, args.device, args.app_models,
                     args.summary_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
