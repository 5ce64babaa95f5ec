"""The installed package (what the container image holds) carries every file the services read at run time:
an editable install would hide a file left out of the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "shared" / "src", *sorted((ROOT / "services").glob("*/src"))]


def test_the_wheel_holds_every_source_and_data_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"  # built from a copy: the build leaves nothing in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("shared", "services"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path, tree], check=True, cwd=tmp_path
    )
    (wheel,) = tmp_path.glob("doudi-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(source))
        for source in SOURCES
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)
    }
    assert expected - packaged == set()


def test_no_source_or_data_file_is_hidden_from_git_by_an_ignore_rule() -> None:
    """A file the services read but git ignores works here and is missing from every fresh clone."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (a source archive): nothing to compare with")
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "shared", "services"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    hidden = [p for p in ignored if "__pycache__" not in p and ".egg-info" not in p]
    assert hidden == []
