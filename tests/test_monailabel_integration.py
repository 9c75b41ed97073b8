"""tools/zoo/monailabel_integration.sh without MONAI Label: a fake environment whose ``python`` does nothing, so that
the script goes as far as choosing its bundles (none is ready) and stops with its setup error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import REPO

SCRIPT = REPO / "tools" / "zoo" / "monailabel_integration.sh"
MARKER = ".monailabel_integration"


def run_script(workdir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The script on a bundle that does not exist, with a fake MONAI Label environment, in ``workdir``."""
    venv = tmp_path / "fake_venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    env = {**os.environ, "MONAILABEL_WORKDIR": str(workdir), "MONAILABEL_VENV": str(venv)}
    return subprocess.run(["bash", str(SCRIPT), "no_such_bundle"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_users_own_studies_folder_in_the_work_folder_is_kept(tmp_path):
    studies = tmp_path / "work" / "studies"
    studies.mkdir(parents=True)
    (studies / "case1.nii.gz").write_bytes(b"a user's image")
    done = run_script(tmp_path / "work", tmp_path)
    assert done.returncode == 2
    assert "did not make it" in done.stderr and str(studies) in done.stderr
    assert (studies / "case1.nii.gz").read_bytes() == b"a user's image"


def test_the_scripts_own_folders_are_replaced_on_the_next_run(tmp_path):
    work = tmp_path / "work"
    first = run_script(work, tmp_path)
    assert first.returncode == 2 and "no bundle is ready" in first.stderr
    assert (work / "apps" / MARKER).is_file() and (work / "studies" / MARKER).is_file()
    (work / "studies" / "old_case0.nii.gz").write_bytes(b"left from the first run")
    second = run_script(work, tmp_path)
    assert second.returncode == 2 and "no bundle is ready" in second.stderr
    assert sorted(p.name for p in (work / "studies").iterdir()) == [MARKER]
