"""Deployments install a lock with hashes (issue 12): dependencies were ranges, so every deploy
resolved fresh versions (betas included). requirements.lock pins every package with hashes, it
satisfies the ranges, and azd's package hooks put it in the package as requirements.txt."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock."""
    text = Path(ROOT, "requirements.lock").read_text()
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = block.splitlines()[0]
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^\s\\]+)", first)
        if match:
            entries[canonicalize_name(match.group(1).split("[")[0])] = (
                match.group(2),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", block),
            )
    return entries


def test_every_locked_package_is_pinned_with_hashes() -> None:
    entries = locked()
    assert len(entries) > 30
    assert all(hashes for _, hashes in entries.values()), [n for n, (_, h) in entries.items() if not h]


def test_the_lock_satisfies_the_ranges() -> None:
    entries = locked()
    for line in Path(ROOT, "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(entries[name][0], prereleases=True), (name, entries[name][0])


def test_packaging_swaps_the_lock_in_and_restores_the_ranges(tmp_path: Path) -> None:
    azure = Path(ROOT, "azure.yaml").read_text()
    assert "prepackage" in azure and "./scripts/use_lock.sh swap" in azure
    assert "postpackage" in azure and "./scripts/use_lock.sh restore" in azure
    (tmp_path / "scripts").mkdir()
    shutil.copy(Path(ROOT, "scripts", "use_lock.sh"), tmp_path / "scripts" / "use_lock.sh")
    for name in ("requirements.txt", "requirements.lock"):
        shutil.copy(Path(ROOT, name), tmp_path / name)
    script = str(tmp_path / "scripts" / "use_lock.sh")
    subprocess.run(["sh", script, "swap"], check=True)
    assert (tmp_path / "requirements.txt").read_text() == Path(ROOT, "requirements.lock").read_text()
    assert subprocess.run(["sh", script, "swap"], capture_output=True).returncode == 1  # not twice
    subprocess.run(["sh", script, "restore"], check=True)
    assert (tmp_path / "requirements.txt").read_text() == Path(ROOT, "requirements.txt").read_text()
    assert ".requirements.ranges.txt" in Path(ROOT, ".funcignore").read_text()
