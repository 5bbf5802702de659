"""Shared test helpers: where the real benchmark data lives, and small corpora cut from it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Real data lives beside the checkout (../shared/data) and is never copied into the repository.
SHARED_DATA = Path(os.environ.get("T5_SHARED_DATA", REPO.parent / "shared" / "data"))


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
