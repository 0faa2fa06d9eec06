"""Run one fuzz target under atheris (coverage-guided, libFuzzer).

    python -m tests.fuzz.run --list
    python -m tests.fuzz.run NAME [--runs N] [--seconds S] [--jobs J] [--keep DIR]
    python -m tests.fuzz.run NAME --replay FILE...

The runner supervises: it makes a work directory (``DIR`` with ``--keep``, else
a temporary one removed after a clean run), copies nothing into the committed
corpus, and starts ``J`` fuzzing processes (``--child``, normally 1) with the
same interpreter.  Each child imports the target module under
``atheris.instrument_imports()`` (so ``ledger``, ``web``, ``qr``, ``keys`` and
the target are instrumented as imported) and hands libFuzzer the work
directory (where it writes new inputs) and ``tests/fuzz/corpus/NAME`` (read
only).  libFuzzer runs with ``-timeout=5`` (a hang is a failure) and
``-rss_limit_mb=2048``.

Exit status 0 when every run ended cleanly; otherwise non-zero (libFuzzer's:
77 for an escaped exception, 70 for a hang, ...), after libFuzzer printed the
traceback and the path of the crash artifact, which the runner lists again and
keeps (the temporary directory is not removed then).  ``--replay`` runs files
through the target in-process, without atheris, to see a plain traceback.

``--target-file PATH`` loads the target from a file instead of
``tests.fuzz.targets`` (the runner's own tests use it with a deliberately
crashing toy target; nothing crashing is committed).

This module MUST NOT import ``ledger`` (or anything that does) at module level:
modules imported before ``instrument_imports()`` are not instrumented.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

FUZZ_DIR = Path(__file__).resolve().parent
REPO_ROOT = FUZZ_DIR.parent.parent
CORPUS_DIR = FUZZ_DIR / "corpus"
TARGETS_PACKAGE = "tests.fuzz.targets"
#: Packages instrumented for coverage when imported by a target.
INSTRUMENTED = ("ledger", "web", "qr", "keys", "tests.fuzz")
#: Seconds one input may take before libFuzzer calls it a hang.
TIMEOUT = 5
RSS_LIMIT_MB = 2048
#: The supervisor kills a child this long after its --seconds ran out (libFuzzer stuck).
GRACE_SECONDS = 120


def target_names() -> list[str]:
    """Every target module in ``tests/fuzz/targets`` (``_``-prefixed helpers excluded), sorted."""
    path = [str(FUZZ_DIR / "targets")]
    return sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))


def corpus_dir(name: str) -> Path:
    """The committed seed corpus of target ``name``."""
    return CORPUS_DIR / name


def corpus_files(name: str) -> list[Path]:
    """The files of ``name``'s corpus, sorted (hidden files such as ``.gitkeep`` excluded)."""
    directory = corpus_dir(name)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def load_target(name: str, target_file: Path | None = None) -> Callable[[bytes], None]:
    """Import target ``name`` (or the module at ``target_file``) and return its ``one``."""
    module: ModuleType
    if target_file is not None:
        # Import by name from its directory, so atheris' import hook instruments it too.
        sys.path.insert(0, str(target_file.resolve().parent))
        module = importlib.import_module(target_file.stem)
    else:
        if name not in target_names():
            raise SystemExit(f"unknown fuzz target {name!r}; known: {', '.join(target_names())}")
        module = importlib.import_module(f"{TARGETS_PACKAGE}.{name}")
    one = getattr(module, "one", None)
    if not callable(one):
        raise SystemExit(f"fuzz target {name!r} has no function one(data: bytes)")
    return one  # type: ignore[no-any-return]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run", description="Run a Suyuan fuzz target under atheris."
    )
    parser.add_argument("name", nargs="?", help="target name (see --list)")
    parser.add_argument("--list", action="store_true", help="print the target names and exit")
    parser.add_argument("--runs", type=int, help="stop after this many executions")
    parser.add_argument("--seconds", type=int, help="stop after this many seconds")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fuzzing processes")
    parser.add_argument("--keep", type=Path, help="work directory to keep (new inputs, artifacts)")
    parser.add_argument("--corpus", type=Path, help="seed corpus (default tests/fuzz/corpus/NAME)")
    parser.add_argument("--target-file", type=Path, help="load the target from this file")
    parser.add_argument("--timeout", type=int, default=TIMEOUT, help=argparse.SUPPRESS)
    parser.add_argument("--replay", type=Path, nargs="+", help="run these files in-process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", help=argparse.SUPPRESS)
    return parser


def _libfuzzer_args(args: argparse.Namespace, corpus: Path) -> list[str]:
    flags = [f"-timeout={args.timeout}", f"-rss_limit_mb={RSS_LIMIT_MB}"]
    if args.runs is not None:
        flags.append(f"-runs={args.runs}")
    if args.seconds is not None:
        flags.append(f"-max_total_time={args.seconds}")
    flags.append(f"-artifact_prefix={args.artifacts}")
    dirs = [str(args.work)]
    if corpus.is_dir():
        dirs.append(str(corpus))
    return flags + dirs


def _child(args: argparse.Namespace, corpus: Path) -> int:
    """Fuzz in this process; libFuzzer exits the process itself (never returns normally)."""
    import atheris  # only the fuzzing process needs it

    with atheris.instrument_imports(include=[*INSTRUMENTED, *_file_module(args)]):
        one = load_target(args.name, args.target_file)
    atheris.Setup([sys.argv[0], *_libfuzzer_args(args, corpus)], one)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz() exits


def _file_module(args: argparse.Namespace) -> list[str]:
    return [args.target_file.stem] if args.target_file is not None else []


def _replay(args: argparse.Namespace) -> int:
    one = load_target(args.name, args.target_file)
    for path in args.replay:
        print(f"replaying {path}", file=sys.stderr)
        one(path.read_bytes())  # a traceback here is the bug
    print(f"{len(args.replay)} input(s) passed", file=sys.stderr)
    return 0


def _supervise(args: argparse.Namespace, corpus: Path) -> int:
    if args.keep is not None:
        base = args.keep.resolve()
    else:
        base = Path(tempfile.mkdtemp(prefix=f"suyuan-fuzz-{args.name}-"))
    work = base / "work"
    artifacts = base / "artifacts"
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"fuzz {args.name}: corpus {corpus}, work {work}", file=sys.stderr, flush=True)
    limit = None if args.seconds is None else args.seconds + GRACE_SECONDS
    procs = []
    for job in range(max(1, args.jobs)):
        cmd = [sys.executable, "-m", "tests.fuzz.run", args.name, "--child"]
        cmd += ["--work", str(work), "--artifacts", f"{artifacts}/job{job}-"]
        cmd += ["--corpus", str(corpus), "--timeout", str(args.timeout)]
        if args.runs is not None:
            cmd += ["--runs", str(args.runs)]
        if args.seconds is not None:
            cmd += ["--seconds", str(args.seconds)]
        if args.target_file is not None:
            cmd += ["--target-file", str(args.target_file.resolve())]
        procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT))
    started = time.monotonic()
    status = 0
    for proc in procs:
        remaining = None if limit is None else max(1.0, limit - (time.monotonic() - started))
        try:
            code = proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print(f"fuzz {args.name}: libFuzzer did not stop; killed", file=sys.stderr)
            code = 1
        if code != 0 and status == 0:
            status = code if code > 0 else 1
    found = sorted(p for p in artifacts.iterdir() if p.is_file())
    for path in found:
        print(f"fuzz {args.name}: artifact {path}", file=sys.stderr)
    if status == 0 and found:
        status = 1  # an artifact without a failing exit (e.g. a leak report) still fails
    if status != 0:
        print(
            f"fuzz {args.name}: FAILED (exit {status}); kept {base}; replay with "
            f"python -m tests.fuzz.run {args.name} --replay ARTIFACT",
            file=sys.stderr,
        )
    elif args.keep is None:
        shutil.rmtree(base, ignore_errors=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        print("\n".join(target_names()))
        return 0
    if not args.name:
        _parser().error("a target NAME is required (see --list)")
    if (args.runs is not None and args.runs < 0) or (args.seconds is not None and args.seconds < 1):
        _parser().error("--runs must be >= 0 and --seconds >= 1")
    corpus = (args.corpus or corpus_dir(args.name)).resolve()
    if args.replay:
        return _replay(args)
    if args.child:
        return _child(args, corpus)
    return _supervise(args, corpus)


if __name__ == "__main__":
    sys.exit(main())
