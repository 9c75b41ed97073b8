#!/usr/bin/env bash
# MONAI Label integration test of this repository's bundles, through the `monaibundle` sample app, on loopback.
#
# What it does:
#   1. builds the MONAI Label environment, a venv (default <repo>/.venv-monailabel, which ignores itself in git),
#      unless it already exists and imports: `pip install monailabel==0.8.5 "pydicom<3" "dicomweb-client<0.60"
#      "pynetdicom<3"`. NOTE: monailabel pulls torch 2.14.1 (a CUDA build, ~4.5 GB of nvidia-* wheels, ~8 GB in all;
#      it runs on CPU); pydicom 3 breaks pydicom-seg at server start, hence the pins. It is kept apart from the
#      project's own environment on purpose.
#   2. creates the stock app (unchanged): monailabel apps --download --name monaibundle --output <workdir>/apps
#   3. puts each bundle under <app>/model/<name> as a packaged bundle: tools/zoo/package_bundles.py (zip with
#      shared/ copied in as scripts/) and unzip, or, when packaging refuses, a dereferenced copy (cp -rL). A bundle
#      whose metadata says it classifies and whose name lacks "classification" is placed as
#      <name>_classification, because MONAI Label picks the task type from the folder name.
#   4. gives a bundle without models/model.pt a RANDOMLY INITIALISED network_def state dict (in the app copy only,
#      never in the repository): the test checks the serving path, not the accuracy.
#   5. writes one synthetic image per bundle into <workdir>/studies (NIfTI; 4-D channels-last for multi-channel
#      3-D inputs; PNG for 2-D inputs).
#   6. starts `monailabel start_server` on 127.0.0.1 with --conf zoo_source github (the default zoo source needs
#      the internet even for local bundles), --conf sam2 false, --conf skip_trainers true;
#   7. waits for /info/, checks that each bundle reports the labels of its metadata's channel_def, POSTs
#      /infer/<name>?image=<id> and checks that a label map with the input's spatial shape comes back
#      (classification: one score per class); prints a summary;
#   8. always stops the server (its whole process group) on exit.
#
# Usage (from anywhere):
#   tools/zoo/monailabel_integration.sh                   # unetr_btcv_seg unetr_brats_seg (+ vit_cxr14_cls if there)
#   tools/zoo/monailabel_integration.sh unetr_btcv_seg    # bundles by name (folders under bundles/) ...
#   tools/zoo/monailabel_integration.sh /tmp/my_bundle    # ... or by path
#   MONAILABEL_KEEP=1 tools/zoo/monailabel_integration.sh # keep the work folder (app, studies, server.log)
#
# Environment:
#   MONAILABEL_VENV          venv path (default <repo>/.venv-monailabel)
#   MONAILABEL_VERSION       monailabel version to install (default 0.8.5)
#   MONAILABEL_WORKDIR       work folder (default: a new /tmp/monailabel_it.XXXXXX)
#                            its apps/, studies/ and dist/ are replaced only when an earlier run made them (they hold
#                            .monailabel_integration); a user's own non-empty folder of that name there is refused
#   MONAILABEL_PORT          server port (default: a free port)
#   MONAILABEL_DEVICE        inference device sent with each request (default cpu)
#   MONAILABEL_TIMEOUT       seconds to wait for /info/ (default 900)
#   MONAILABEL_IMAGE_SIZE    synthetic 3-D image size, e.g. "80 72 56" (default; 2-D images are 256 256)
#   MONAILABEL_KEEP          1: keep the work folder even when everything passed
#   PYTHON                   Python used to build the venv and to package bundles (default python3)
# Exit status: 0 when every bundle passed, 1 when one failed, 2 on a setup error.
# A 3-D UNETR at paper size (ViT-B, 96^3 or 128^3 windows) takes tens of seconds per volume on a CPU.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MONAILABEL_VENV:-$REPO/.venv-monailabel}"
ML_VERSION="${MONAILABEL_VERSION:-0.8.5}"
PYTHON="${PYTHON:-python3}"
DEVICE="${MONAILABEL_DEVICE:-cpu}"
TIMEOUT="${MONAILABEL_TIMEOUT:-900}"
read -r -a IMAGE_SIZE <<< "${MONAILABEL_IMAGE_SIZE:-}"

log() { printf '[monailabel-it] %s\n' "$*"; }
die() { printf '[monailabel-it] ERROR: %s\n' "$*" >&2; exit 2; }

# ------------------------------------------------------------------------------------------------ environment
# The venv's `monailabel` launcher runs whatever `python` is first on PATH and puts the venv's parent folder on
# PYTHONPATH; calling the module with the venv's interpreter avoids both.
monailabel() { "$VENV/bin/python" -m monailabel.main "$@"; }
# tools/zoo/monailabel_client.py, with the venv's interpreter, from the repository root (it imports tools.*)
helper() { (cd "$REPO" && "$VENV/bin/python" -m tools.zoo.monailabel_client "$@"); }

venv_works() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c "import monailabel, monai, torch, torchvision, nibabel, requests, pydicom_seg" 2>/dev/null
}

ensure_venv() {
    if venv_works; then
        log "reusing MONAI Label environment $VENV"
    else
        log "building MONAI Label environment in $VENV (a multi-GB download; several minutes)"
        "$PYTHON" -m venv "$VENV"
        printf '*\n' > "$VENV/.gitignore"  # the venv ignores itself
        "$VENV/bin/python" -m pip install --upgrade pip > /dev/null
        "$VENV/bin/python" -m pip install "monailabel==$ML_VERSION" "pydicom<3" "dicomweb-client<0.60" "pynetdicom<3"
        venv_works || die "the MONAI Label environment in $VENV does not import (see the pip output above)"
    fi
    "$VENV/bin/python" - <<'EOF'
import monai, monailabel, torch
print(f"[monailabel-it] monailabel {monailabel.__version__}, monai {monai.__version__}, torch {torch.__version__}, "
      f"cuda available: {torch.cuda.is_available()}")
EOF
}

# ------------------------------------------------------------------------------------------------ work folders
MARKER=".monailabel_integration"

replace_marked_dir() {  # dir -> a new, empty folder holding only $MARKER
    # Deletes a folder only when this script made it (it holds $MARKER), so that MONAILABEL_WORKDIR=. or =/data
    # never wipes a user's own apps/ or studies/.
    local dir="$1"
    if [ -e "$dir" ] && [ ! -d "$dir" ]; then
        die "$dir is a file, not a folder; set MONAILABEL_WORKDIR to another work folder"
    fi
    if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
        [ -f "$dir/$MARKER" ] || die "$dir is not empty and this script did not make it (it has no $MARKER): \
the script replaces only its own folders; set MONAILABEL_WORKDIR to another work folder, or move $dir away"
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    printf 'written by tools/zoo/monailabel_integration.sh; its next run with this work folder replaces this folder\n' \
        > "$dir/$MARKER"
}

# ------------------------------------------------------------------------------------------------ bundles
resolve_bundle() {  # name or path -> absolute folder
    local b="$1"
    if [ -d "$b" ]; then
        (cd "$b" && pwd)
    elif [ -d "$REPO/bundles/$b" ]; then
        echo "$REPO/bundles/$b"
    fi
}

bundle_ready() {
    [ -f "$1/configs/metadata.json" ] && { [ -f "$1/configs/inference.json" ] || [ -f "$1/configs/inference.yaml" ]; }
}

app_name_for() {  # MONAI Label takes the task type from the folder name
    local src="$1" name
    name="$(basename "$src")"
    "$VENV/bin/python" - "$src" "$name" <<'EOF'
import json, sys
meta = json.load(open(f"{sys.argv[1]}/configs/metadata.json"))
name = sys.argv[2]
pred = next(iter(meta.get("network_data_format", {}).get("outputs", {}).values()), {})
classifies = "class" in str(pred.get("format", "")).lower() or "classif" in str(meta.get("task", "")).lower()
print(f"{name}_classification" if classifies and "classification" not in name.lower() else name)
EOF
}

install_bundle() {  # src dest_folder
    local src="$1" dest="$2" name zip
    name="$(basename "$src")"
    rm -rf "$dest"
    if [ "$(dirname "$src")" = "$REPO/bundles" ] && [ -f "$REPO/tools/zoo/package_bundles.py" ]; then
        if (cd "$REPO" && "$PYTHON" -m tools.zoo.package_bundles --bundles "$name" --dist_dir "$WORK/dist") \
            > "$WORK/package_$name.log" 2>&1; then
            zip="$(ls -t "$WORK/dist/${name}"_v*.zip | head -n 1)"
            "$PYTHON" -m zipfile -e "$zip" "$WORK/unzip_$name"
            mv "$WORK/unzip_$name/$name" "$dest"
            rm -rf "$WORK/unzip_$name"
            log "$name: packaged by tools/zoo/package_bundles.py -> $(basename "$zip")"
            return
        fi
        log "$name: tools/zoo/package_bundles.py refused ($(tail -n 1 "$WORK/package_$name.log")); copying instead"
    fi
    cp -rL "$src" "$dest"  # -L: scripts/ (a link to shared/) becomes real files
    rm -rf "$dest"/{runs,eval,logs,mlruns,dist}
    find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
    log "$name: copied (dereferenced) from $src"
}

# ------------------------------------------------------------------------------------------------ server
SERVER_PID=""
cleanup() {
    local status=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        log "stopping the server (process group $SERVER_PID)"
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        if [ "$status" = 0 ] && [ "${MONAILABEL_KEEP:-0}" != 1 ] && [ -z "${MONAILABEL_WORKDIR:-}" ]; then
            rm -rf "$WORK"
        else
            log "work folder kept: $WORK (server log: $WORK/server.log)"
        fi
    fi
    exit "$status"
}

main() {
    local requested=("$@")
    if [ ${#requested[@]} -eq 0 ]; then
        requested=(unetr_btcv_seg unetr_brats_seg)
        [ -d "$REPO/bundles/vit_cxr14_cls" ] && requested+=(vit_cxr14_cls)
    fi
    WORK="${MONAILABEL_WORKDIR:-$(mktemp -d /tmp/monailabel_it.XXXXXX)}"
    mkdir -p "$WORK"
    WORK="$(cd "$WORK" && pwd)"
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    ensure_venv

    local apps="$WORK/apps" studies="$WORK/studies"
    replace_marked_dir "$apps"
    replace_marked_dir "$studies"
    replace_marked_dir "$WORK/dist"  # fresh zips: the packaging refuses a same-version zip of other content
    monailabel apps --download --name monaibundle --output "$apps" > "$WORK/apps.log" 2>&1 ||
        { cat "$WORK/apps.log"; die "monailabel apps --download failed"; }
    local app="$apps/monaibundle"
    mkdir -p "$app/model"
    log "app: $app"

    local names=() cases=() skipped=()
    for b in "${requested[@]}"; do
        local src name image image_id
        src="$(resolve_bundle "$b")"
        if [ -z "$src" ] || ! bundle_ready "$src"; then
            log "$b: SKIPPED, not ready (needs configs/inference.json and configs/metadata.json)"
            skipped+=("$b")
            continue
        fi
        name="$(app_name_for "$src")"
        [ "$name" != "$(basename "$src")" ] && log "$(basename "$src"): placed as $name (classification task type)"
        install_bundle "$src" "$app/model/$name"
        log "$name: $(helper weights "$app/model/$name")"
        image_id="${name}_case0"
        log "$name: image $(helper image "$app/model/$name" "$studies" "$image_id" \
            ${IMAGE_SIZE[@]+--size "${IMAGE_SIZE[@]}"})"
        image="$(ls "$studies/$image_id".*)"
        log "$name: expects $(helper labels "$app/model/$name")"
        names+=("$name")
        cases+=(--case "$name=$image_id:$image")
    done
    [ ${#names[@]} -gt 0 ] || die "no bundle is ready (skipped: ${skipped[*]})"

    local port="${MONAILABEL_PORT:-}"
    [ -n "$port" ] ||
        port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    local models_csv
    models_csv="$(IFS=,; echo "${names[*]}")"
    log "starting the server on 127.0.0.1:$port with models $models_csv (log: $WORK/server.log)"
    setsid "$VENV/bin/python" -m monailabel.main start_server --app "$app" --studies "$studies" \
        --host 127.0.0.1 --port "$port" --conf models "$models_csv" --conf zoo_source github \
        --conf sam2 false --conf skip_trainers true \
        --conf preload false > "$WORK/server.log" 2>&1 &
    SERVER_PID=$!

    local status=0
    helper check --url "http://127.0.0.1:$port" "${cases[@]}" --app-models "$app/model" \
        --timeout "$TIMEOUT" --device "$DEVICE" --summary-json "$WORK/summary.json" || status=$?
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server exited early; last lines of its log:"; tail -n 40 "$WORK/server.log"; status=1
    elif [ "$status" != 0 ]; then
        log "last lines of the server log:"; grep -v ' INFO ' "$WORK/server.log" | tail -n 40 || true
    fi
    [ ${#skipped[@]} -eq 0 ] || log "skipped (not ready): ${skipped[*]}"
    return "$status"
}

main "$@"
