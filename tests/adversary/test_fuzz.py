"""The fuzz command (`bench/fuzz.py`) in the suite: a short run over every target finds no crash,
and the harness does catch one when a target misbehaves (so "0 crashes" means something)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import bench.fuzz as fuzz
from cod import jobfile


def run_fuzz(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.fuzz", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).parents[2])


def test_a_short_run_over_every_target_finds_no_crash(tmp_path: Path) -> None:
    done = run_fuzz("--target", "all", "--runs", "4500", "--crash-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    total = re.search(r"^total\s+inputs\s+([\d,]+)\s+([\d,]+) inputs/s.*crashes (\d+)$",
                      done.stdout, re.MULTILINE)
    assert total is not None, done.stdout
    assert int(total.group(1).replace(",", "")) >= 4500 and total.group(3) == "0"
    for target in fuzz.TARGETS:
        assert re.search(rf"^{target}\s+inputs\s+1,500 ", done.stdout, re.MULTILINE), done.stdout
    assert "reproduce: " in done.stdout
    assert list(tmp_path.iterdir()) == []  # no crash input saved


def test_the_harness_reports_a_crash_with_its_reproducer(tmp_path: Path) -> None:
    """A translator that raises a stray TypeError on some input is caught and reported."""
    source = Path(jobfile.__file__).read_text()
    broken = tmp_path / "pkg" / "cod"
    broken.mkdir(parents=True)
    for module in Path(jobfile.__file__).parent.glob("*.py"):
        (broken / module.name).write_text(module.read_text())
    (broken / "artifacts").symlink_to(Path(jobfile.__file__).parent / "artifacts")
    (broken / "jobfile.py").write_text(source.replace(
        "def translate_bacalhau(job: Mapping[str, Any]) -> JobDraft:\n",
        "def translate_bacalhau(job: Mapping[str, Any]) -> JobDraft:\n"
        "    raise TypeError('planted')\n", 1))
    done = subprocess.run(
        [sys.executable, "-m", "bench.fuzz", "--target", "jobfile", "--runs", "300",
         "--crash-dir", str(tmp_path / "crashes")], capture_output=True, text=True, timeout=60,
        cwd=tmp_path / "pkg",  # first on sys.path: the broken copy of `cod` is imported
        env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CRASH jobfile: TypeError" in done.stdout and "planted" in done.stdout
    reproducer = re.search(r"reproduce: (.+ --reproduce (\S+))$", done.stdout, re.MULTILINE)
    assert reproducer is not None and Path(reproducer.group(2)).exists()
    assert not re.search(r"^total .*crashes 0$", done.stdout, re.MULTILINE)
