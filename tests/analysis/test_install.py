"""The package installs with pip into a fresh environment (a venv seeing the system's numpy,
h5py and matplotlib, offline) and works from there, away from the repository."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_pip_install_into_a_venv(real_file, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(os.path.join(ROOT, "analysis"), src / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no venv module here (Debian: python3-venv): {made.stderr.strip()[:200]}")
    python = str(venv / "bin" / "python")
    p = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    check = ("import analysis, sys; r = analysis.load(sys.argv[1]); "
             "print(analysis.__file__); print(r.shape)")
    p = subprocess.run([python, "-c", check, real_file], capture_output=True, text=True, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "site-packages" in p.stdout and "(3, 298, 10)" in p.stdout
