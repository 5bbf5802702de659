"""Shared test helpers: where the real benchmark data lives, and small corpora cut from it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def find_shared_data(repo: Path = REPO) -> Path:
    """Where the real benchmark data is read from (in place: it is never copied into the repository).

    $T5_SHARED_DATA if set; else `shared/data` beside the checkout; else, for a clone of a local checkout (`git clone .
    /tmp/x`, which leaves the data behind), `shared/data` beside the repository it was cloned from. The first
    candidate is returned when none exists, so errors name the expected place."""
    if os.environ.get("T5_SHARED_DATA"):
        return Path(os.environ["T5_SHARED_DATA"])
    beside = repo.parent / "shared" / "data"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(repo), "remote", "get-url", "origin"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return beside
    if origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / "shared" / "data"
        if cloned_from.is_dir():
            return cloned_from
    return beside


SHARED_DATA = find_shared_data()


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        raise FileNotFoundError(f"benchmark data missing: {path} (set T5_SHARED_DATA to the shared/data folder)")
    return path


def corpus_slice(dest: Path, relative: str = "corpus/tinyshakespeare/part-000.txt", lines: int = 3000) -> Path:
    """The first `lines` lines of a shared corpus file, written to `dest` (a temp dir)."""
    source = shared_file(relative)
    with source.open(encoding="utf-8") as handle:
        head = [next(handle) for _ in range(lines)]
    out = dest / f"{source.parent.name}-{lines}.txt"
    out.write_text("".join(head), encoding="utf-8")
    return out


class ModuleScratch:
    """Set-up shared by a test module of tiny end-to-end runs: torch on one thread (a d_model-64 model gains nothing
    from threads on 2 shared cores) and one temp folder for the module, removed at the end.

        SCRATCH = ModuleScratch("test_x_")
        setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._tmp: Path | None = None
        self._threads: int | None = None

    def set_up(self) -> None:
        import torch

        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def tear_down(self) -> None:
        import shutil

        import torch

        if self._threads is not None:
            torch.set_num_threads(self._threads)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def path(self) -> Path:
        if self._tmp is None:
            import tempfile

            self._tmp = Path(tempfile.mkdtemp(prefix=self.prefix))
        return self._tmp


def run_script_here(main, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit status, stdout + stderr) of a script's command-line entry point `run_main(main, argv)`, run in this
    process (no start-up cost) on one thread, with `env` added to the environment."""
    import contextlib
    import io
    from unittest import mock

    import torch

    from t5kit.training import run_main

    output, threads = io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            run_main(main, argv)
            code = 0
        except SystemExit as exit:
            code = exit.code
        finally:
            torch.set_num_threads(threads)
    return code, output.getvalue()
