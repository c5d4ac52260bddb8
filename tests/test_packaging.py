"""A regular (non-editable) install gives a working prana from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import prana

ROOT = Path(__file__).resolve().parents[1]


def test_regular_install_imports_from_anywhere(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    packages = {path.name for path in (target / "prana").iterdir() if path.is_dir()}
    assert packages - {"__pycache__"} == {"actors", "server", "storage"}
    assert (target / "prana" / "py.typed").exists()
    script = (
        "import prana, prana.actors, prana.storage; "
        f"assert prana.__file__.startswith({str(target)!r}), prana.__file__; "
        "print(len(prana.ActionRegistry()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(prana.ActionRegistry()))
