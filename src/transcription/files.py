"""Small file helpers every service shares: hashing, and writes that never leave half a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_BLOCK = 4 * 1024 * 1024


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks (model weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_writer(final: Path, mode: str = "wb", tmp_dir: Path | None = None) -> Iterator[IO]:
    """Write to a temporary file, then rename it over ``final``.

    Readers see the old file or the whole new one, never a partial one; if the
    block raises, the temporary file is removed and ``final`` is untouched.
    ``tmp_dir`` must be on the same filesystem as ``final`` (default: its folder).
    Temporary names start with ``.tmp-`` so a restarted owner can sweep them.
    """
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir or final.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(tmp_name, final)
    finally:
        Path(tmp_name).unlink(missing_ok=True)  # no-op once renamed


def atomic_write_text(final: Path, text: str, tmp_dir: Path | None = None) -> None:
    with atomic_writer(final, "w", tmp_dir) as handle:
        handle.write(text)


def sweep_tmp_files(directory: Path) -> None:
    """Remove ``.tmp-*`` files a process killed mid-write left in ``directory``."""
    for leftover in directory.glob(".tmp-*"):
        leftover.unlink(missing_ok=True)
