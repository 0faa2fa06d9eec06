"""Fuzzing of Suyuan's parsers: targets, their seed corpora, the atheris runner and tests.

Layout (shared by every fuzzing contributor):

* ``tests/fuzz/targets/<name>.py`` — one target per module, found by
  :func:`pkgutil.iter_modules` (no registry to edit).  Each has
  ``one(data: bytes) -> None``, which returns when the input was accepted with
  its invariants holding or refused with a :class:`ledger.errors.Error`;
  anything else escaping is a bug.  Target modules MUST NOT import atheris.
  Modules whose name starts with ``_`` are helpers, not targets.
* ``tests/fuzz/corpus/<name>/`` — the seed corpus of target ``name``, with
  every crasher found (``crash-<what>``).
* ``tests/fuzz/run.py`` — ``python -m tests.fuzz.run NAME`` runs one target under
  atheris/libFuzzer; ``--list`` prints the targets.
* ``test_corpus.py`` replays every corpus in-process; ``test_atheris.py`` runs
  each target briefly under atheris; ``test_properties_*.py`` are hypothesis
  property tests.
"""
