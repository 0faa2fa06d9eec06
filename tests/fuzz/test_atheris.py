"""Run every fuzz target briefly under atheris, and check the runner itself.

Each target gets a bounded coverage-guided run in a subprocess (the same
interpreter, from the repository root): it must end cleanly and libFuzzer
must report progress with coverage.  The runner's own contract — an escaped
exception or a hang makes it exit non-zero, printing the traceback and the
crash artifact's path — is checked with toy targets written to a temp dir
(nothing crashing is committed).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.run import REPO_ROOT, target_names

TARGETS = target_names()
#: Fuzzing seconds per target: all targets together (with ~3 s of start-up each) stay
#: within ~2.5 minutes of wall time, and no target gets more than 6 s or less than 2 s.
SECONDS = max(2, min(6, 150 // max(1, len(TARGETS)) - 3))
_DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+)", re.MULTILINE)


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", TARGETS)
def test_target_survives_a_short_atheris_run(name: str, tmp_path: Path) -> None:
    proc = _run(name, "--seconds", str(SECONDS), "--keep", str(tmp_path), timeout=SECONDS + 90)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"fuzz target {name} failed:\n{output[-6000:]}"
    done = _DONE.search(output)
    assert done is not None, f"libFuzzer did not report DONE:\n{output[-3000:]}"
    assert int(done.group(1)) > 0 and int(done.group(2)) > 0, done.group(0)
    assert not list((tmp_path / "artifacts").iterdir())


_TOY = """
def one(data: bytes) -> None:
    if data.startswith(b"BOOM"):
        raise {error}("toy target reached its bug")
"""


def _toy(tmp_path: Path, module: str, seed: bytes, error: str) -> tuple[Path, Path]:
    target = tmp_path / f"{module}.py"
    target.write_text(_TOY.format(error=error))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(seed)
    return target, corpus


def test_runner_reports_an_escaped_exception(tmp_path: Path) -> None:
    target, corpus = _toy(tmp_path, "suyuan_toy_crash", b"BOOM!", "IndexError")
    keep = tmp_path / "keep"
    proc = _run(
        "toy", "--target-file", str(target), "--corpus", str(corpus), "--keep", str(keep),
        "--runs", "1000", timeout=90,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" in output and "IndexError: toy target reached its bug" in output
    artifacts = list((keep / "artifacts").iterdir())
    assert len(artifacts) == 1 and artifacts[0].read_bytes() == b"BOOM!"
    assert f"artifact {artifacts[0]}" in output
    # The artifact replays in-process with a plain traceback.
    replay = _run("toy", "--target-file", str(target), "--replay", str(artifacts[0]), timeout=60)
    assert replay.returncode != 0 and "IndexError" in replay.stderr


def test_runner_reports_a_hang(tmp_path: Path) -> None:
    target = tmp_path / "suyuan_toy_hang.py"
    target.write_text(
        "def one(data: bytes) -> None:\n    while data.startswith(b'HANG'):\n        pass\n"
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(b"HANG")
    keep = tmp_path / "keep"
    proc = _run(
        "toy", "--target-file", str(target), "--corpus", str(corpus), "--keep", str(keep),
        "--runs", "100", "--timeout", "1", timeout=90,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "timeout" in output and "suyuan_toy_hang.py" in output
    assert [p.name.startswith("job0-timeout-") for p in (keep / "artifacts").iterdir()] == [True]


def test_runner_passes_a_clean_toy_and_cleans_up(tmp_path: Path) -> None:
    target, corpus = _toy(tmp_path, "suyuan_toy_clean", b"fine", "IndexError")
    target.write_text("def one(data: bytes) -> None:\n    bytes(data)\n")
    proc = _run(
        "toy", "--target-file", str(target), "--corpus", str(corpus), "--runs", "200", timeout=90
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    work = re.search(r"work (\S+)", output)
    assert work is not None and not Path(work.group(1)).exists()


def test_list_prints_the_targets() -> None:
    proc = _run("--list", timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.split() == target_names()
