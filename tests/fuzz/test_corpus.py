"""Replay every seed corpus through its fuzz target in-process (no atheris).

Each past crasher is a file of its target's corpus, so this keeps every one of
them a regression test; and every target must have a non-empty corpus.
"""

from __future__ import annotations

import time

import pytest

from tests.fuzz.run import TIMEOUT, corpus_dir, corpus_files, load_target, target_names

TARGETS = target_names()


def test_targets_are_discovered() -> None:
    assert TARGETS, "no fuzz targets found in tests/fuzz/targets"
    assert all(name.isidentifier() for name in TARGETS)


@pytest.mark.parametrize("name", TARGETS)
def test_corpus_replays_cleanly(name: str) -> None:
    files = corpus_files(name)
    assert files, f"target {name} has no seed corpus in {corpus_dir(name)}"
    one = load_target(name)
    for path in files:
        assert path.stat().st_size <= 64 * 1024, f"{path} is larger than 64 KiB"
        started = time.perf_counter()
        try:
            one(path.read_bytes())
        except Exception as exc:  # the report names the file; the traceback is chained
            raise AssertionError(f"{name}: corpus file {path.name} escaped: {exc!r}") from exc
        elapsed = time.perf_counter() - started
        # The runner's hang limit: an input this slow fails under atheris too.
        assert elapsed < TIMEOUT, f"{name}: corpus file {path.name} took {elapsed:.2f} s"
