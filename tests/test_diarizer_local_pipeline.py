"""A local pyannote pipeline folder (DIARIZER_PIPELINE=/path) goes through the same code as a hub name.

The test writes such a folder from the bundled weights, in pyannote's own layout
(what a downloaded ``pyannote/speaker-diarization-community-1`` snapshot looks
like): ``config.yaml`` naming ``pyannote.audio.pipelines.SpeakerDiarization``
with ``$model/segmentation``, ``$model/embedding`` and ``$model/plda``. The
embedding is a pyannote checkpoint of the CAM++ model; the PLDA is an identity
transform, because pyannote 4 loads one for every pipeline and agglomerative
clustering never reads it.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from test_diarizer_engine import der

from conftest import SAMPLE_WAV, lone_diarizer, read_audio
from transcription.clients import DiarizerClient
from transcription.diarizer import weights
from transcription.diarizer.embedding import EMBEDDING_DIM, CAMPPlusSpeakerEmbedding
from transcription.diarizer.engine import BUNDLED_PARAMETERS, DiarizationEngine


def write_pipeline_folder(folder):
    import lightning
    import pyannote.audio

    (folder / "segmentation").mkdir(parents=True)
    shutil.copyfile(weights.SEGMENTATION.locate(), folder / "segmentation" / "pytorch_model.bin")

    model = CAMPPlusSpeakerEmbedding.bundled()
    (folder / "embedding").mkdir()
    torch.save(
        {
            "pytorch-lightning_version": lightning.__version__,
            "state_dict": model.state_dict(),
            "hyper_parameters": {"sample_rate": 16_000, "num_channels": 1},
            "pyannote.audio": {
                "versions": {"pyannote.audio": pyannote.audio.__version__},
                "architecture": {"module": type(model).__module__, "class": type(model).__name__},
                "specifications": None,
            },
        },
        folder / "embedding" / "pytorch_model.bin",
    )

    (folder / "plda").mkdir()
    lda = 128
    np.savez(folder / "plda" / "xvec_transform.npz", mean1=np.zeros(EMBEDDING_DIM), mean2=np.zeros(lda), lda=np.eye(EMBEDDING_DIM)[:, :lda])
    np.savez(folder / "plda" / "plda.npz", mu=np.zeros(lda), tr=np.eye(lda), psi=np.ones(lda))

    config = {
        "dependencies": {"pyannote.audio": pyannote.audio.__version__},
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "legacy": False,
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "AgglomerativeClustering",
                "embedding_exclude_overlap": True,
            },
        },
        "params": BUNDLED_PARAMETERS,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    return write_pipeline_folder(tmp_path_factory.mktemp("pipeline") / "bundled-as-folder")


def test_a_local_pipeline_folder_diarizes_like_the_bundled_pipeline(pipeline_folder):
    engine = DiarizationEngine(pipeline=str(pipeline_folder))
    turns = engine.diarize(read_audio(SAMPLE_WAV))
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    # the bundled pipeline's clustering without its resegmentation: 8.6 % on this held-out clip
    assert der(turns) <= 0.15


def test_the_cache_identity_of_a_folder_follows_its_files(pipeline_folder, tmp_path):
    folder = shutil.copytree(pipeline_folder, tmp_path / "copy")
    config = folder / "config.yaml"
    before = DiarizationEngine(pipeline=str(folder)).identity
    assert before.startswith(str(folder)) and before == DiarizationEngine(pipeline=str(folder)).identity
    config.write_text(config.read_text().replace("threshold: 0.42", "threshold: 0.5"))
    edited = DiarizationEngine(pipeline=str(folder))
    assert edited.identity != before, "cached results of the old settings must not be served"
    unloaded = edited.identity
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, rewritten later
    assert edited.identity != unloaded, "not loaded yet: the identity follows the files"

    edited.load()
    loaded = edited.identity
    config.write_text(config.read_text().replace("threshold: 0.5", "threshold: 0.6"))
    assert edited.identity == loaded, "results of the loaded pipeline keep the identity it was loaded with"
    assert DiarizationEngine(pipeline=str(folder)).identity != loaded


@pytest.fixture(scope="module")
def folder_diarizer(pipeline_folder, tmp_path_factory):
    with lone_diarizer(str(pipeline_folder), tmp_path_factory.mktemp("folder-diarizer")) as address:
        yield address


async def test_the_service_runs_a_local_pipeline_folder(folder_diarizer):
    async with DiarizerClient(folder_diarizer) as client:
        events = [event async for event in client.diarize(SAMPLE_WAV.read_bytes())]
    speakers = {event.turn.speaker for event in events if event.HasField("turn")}
    assert speakers == {"SPEAKER_00", "SPEAKER_01"}


def test_a_broken_folder_is_a_configuration_error_without_a_token_hint(pipeline_folder, tmp_path):
    folder = shutil.copytree(pipeline_folder, tmp_path / "broken")
    shutil.rmtree(folder / "embedding")
    with pytest.raises(RuntimeError, match="broken") as raised:
        DiarizationEngine(pipeline=str(folder)).load()
    assert "HF_TOKEN" not in str(raised.value), "a local folder needs no token"


def test_a_missing_folder_reads_as_a_hub_name_and_names_the_variable(tmp_path):
    with pytest.raises(RuntimeError, match="set HF_TOKEN"):
        DiarizationEngine(pipeline=str(tmp_path / "no-such-folder")).load()
