"""CTranslate2 Whisper ``model.bin`` -> an openai-whisper checkpoint.

The machines reach package registries but no model hub, so openai-whisper's
own weights cannot be fetched; the bundled CTranslate2 Whisper models (see
``transcription.asr.models``) carry the same weights under other names. This
module reads the CTranslate2 binary (the layout ``ctranslate2/specs/model_spec.py``
writes: version, spec name, revision, then named variables with shape, dtype and
raw bytes, then aliases) and writes ``{'dims': ..., 'model_state_dict': ...}``,
which ``whisper.load_model(path)`` accepts.

The mapping is one-to-one: the fused self-attention query/key/value and the
fused cross-attention key/value are split apart, layer norms (gamma/beta) and
feed-forward layers are renamed, and the decoder output projection must be the
token embedding (tied in openai-whisper). CTranslate2 stores an all-zero key
bias, which openai-whisper does not have; a non-zero one is refused rather than
dropped. Tensors keep the file's float dtype (float16 for the bundled models):
``load_state_dict`` copies them into the model's float32 parameters.

``converted_checkpoint`` converts once into a cache directory and reuses the
result only while a JSON sidecar's sha256 of the source ``model.bin`` and of the
checkpoint both still match. ``load_model`` is what an engine calls: it also
applies the alignment heads from the CTranslate2 ``config.json`` (word
timestamps), which a checkpoint cannot carry.

CLI: ``python -m transcription.asr.whisper_convert CT2_DIR OUTPUT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import struct
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transcription.files import atomic_write_text, atomic_writer, sha256_file

if TYPE_CHECKING:  # torch and whisper are imported only when used
    import torch
    import whisper

log = logging.getLogger(__name__)

# ctranslate2/specs/model_spec.py, _dtype_to_type_id
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_FLOAT_DTYPES = {"float32", "float16"}
_MIN_BINARY_VERSION, _MAX_BINARY_VERSION = 4, 6  # 4: type ids and byte counts (aliases since 3); 6: current
_SIDECAR_FORMAT = 1


class ConversionError(ValueError):
    """The directory does not hold a CTranslate2 Whisper model this converter can read."""


@dataclass(frozen=True)
class ModelDimensions:
    """The fields of ``whisper.model.ModelDimensions``, in its order."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


# -- reading the CTranslate2 binary ---------------------------------------------------


class _Reader:
    def __init__(self, data: np.ndarray, path: Path):
        self.data, self.offset, self.path = data, 0, path

    def take(self, size: int) -> np.ndarray:
        if self.offset + size > len(self.data):
            raise ConversionError(f"{self.path} is truncated (wanted {size} bytes at offset {self.offset})")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)).tobytes())
        return value

    def string(self) -> str:
        raw = self.take(self.unpack("H")).tobytes()  # length counts the trailing NUL
        if not raw.endswith(b"\0"):
            raise ConversionError(f"{self.path} is not a CTranslate2 model file (bad string at offset {self.offset})")
        return raw[:-1].decode("utf-8")


def read_ct2_variables(model_bin: Path) -> tuple[str, int, dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin``: (spec name, spec revision, variables with aliases resolved).

    Arrays are copies (the file is mapped, not read whole, and not kept open);
    bfloat16 ones come back as float32.
    """
    if model_bin.stat().st_size < 4:
        raise ConversionError(f"{model_bin} is too short to be a CTranslate2 model")
    raw = np.memmap(model_bin, dtype=np.uint8, mode="r")
    reader = _Reader(raw, model_bin)
    version = reader.unpack("I")
    if not _MIN_BINARY_VERSION <= version <= _MAX_BINARY_VERSION:
        raise ConversionError(
            f"{model_bin}: CTranslate2 binary version {version} is not supported "
            f"(expected {_MIN_BINARY_VERSION}..{_MAX_BINARY_VERSION}); is this a CTranslate2 model?"
        )
    spec, revision = reader.string(), reader.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
        type_id = reader.unpack("B")
        if type_id >= len(_DTYPES):
            raise ConversionError(f"{model_bin}: variable {name} has unknown dtype id {type_id}")
        dtype = _DTYPES[type_id]
        size = reader.unpack("I")
        np_dtype = np.dtype("uint16" if dtype == "bfloat16" else dtype).newbyteorder("<")
        if size != np_dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ConversionError(f"{model_bin}: variable {name} has {size} bytes for shape {shape} of {dtype}")
        array = reader.take(size).view(np_dtype).reshape(shape)
        if dtype == "bfloat16":  # exact: bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array.astype(array.dtype.newbyteorder("="), copy=True)
    for _ in range(reader.unpack("I")):  # aliases: duplicated variables are saved once
        alias, target = reader.string(), reader.string()
        if target not in variables:
            raise ConversionError(f"{model_bin}: alias {alias} points at unknown variable {target}")
        variables[alias] = variables[target]
    if reader.offset != len(raw):
        raise ConversionError(f"{model_bin}: {len(raw) - reader.offset} unexpected bytes after the variables")
    return spec, revision, variables


def _to_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    import torch

    if array.dtype.name not in _FLOAT_DTYPES:
        raise ConversionError(
            f"variable {name} is {array.dtype.name}: quantized CTranslate2 models (int8/int16) are not supported; "
            f"convert a float16 or float32 model"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


# -- the mapping ------------------------------------------------------------------------


def _layer_count(variables: dict[str, Any], prefix: str) -> int:
    indices = {int(m.group(1)) for name in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", name))}
    if indices != set(range(len(indices))):
        raise ConversionError(f"{prefix} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    if name not in variables or variables[name].shape != ():
        raise ConversionError(f"the model has no scalar {name}")
    return int(variables[name])


def whisper_state_dict(variables: dict[str, np.ndarray]) -> tuple[ModelDimensions, dict[str, torch.Tensor]]:
    """Map CTranslate2 ``WhisperSpec`` variables onto openai-whisper's state dict and dimensions."""
    import torch

    used: set[str] = set()

    def get(name: str) -> torch.Tensor:
        if name not in variables:
            raise ConversionError(f"the model has no variable {name}; not a CTranslate2 Whisper model?")
        used.add(name)
        return _to_tensor(variables[name], name)

    state: dict[str, torch.Tensor] = {}

    def linear(target: str, source: str) -> None:
        state[f"{target}.weight"] = get(f"{source}/weight")
        state[f"{target}.bias"] = get(f"{source}/bias")

    def layer_norm(target: str, source: str) -> None:
        state[f"{target}.weight"] = get(f"{source}/gamma")
        state[f"{target}.bias"] = get(f"{source}/beta")

    def split(target: str, source: str, parts: tuple[str, ...]) -> None:
        weights = get(f"{source}/weight").chunk(len(parts), dim=0)
        biases = get(f"{source}/bias").chunk(len(parts), dim=0)
        for part, weight, bias in zip(parts, weights, biases, strict=True):
            state[f"{target}.{part}.weight"] = weight.clone()
            if part == "key":  # openai-whisper's key projection has no bias
                if torch.count_nonzero(bias):
                    raise ConversionError(f"{source} has a non-zero key bias, which openai-whisper cannot represent")
            else:
                state[f"{target}.{part}.bias"] = bias.clone()

    def block(target: str, source: str, cross: bool) -> None:
        split(f"{target}.attn", f"{source}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{target}.attn.out", f"{source}/self_attention/linear_1")
        layer_norm(f"{target}.attn_ln", f"{source}/self_attention/layer_norm")
        if cross:
            linear(f"{target}.cross_attn.query", f"{source}/attention/linear_0")
            split(f"{target}.cross_attn", f"{source}/attention/linear_1", ("key", "value"))
            linear(f"{target}.cross_attn.out", f"{source}/attention/linear_2")
            layer_norm(f"{target}.cross_attn_ln", f"{source}/attention/layer_norm")
        linear(f"{target}.mlp.0", f"{source}/ffn/linear_0")
        linear(f"{target}.mlp.2", f"{source}/ffn/linear_1")
        layer_norm(f"{target}.mlp_ln", f"{source}/ffn/layer_norm")

    n_audio_layer = _layer_count(variables, "encoder")
    n_text_layer = _layer_count(variables, "decoder")
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    state["encoder.positional_embedding"] = get("encoder/position_encodings/encodings")
    for i in range(n_audio_layer):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.token_embedding.weight"] = get("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = get("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    layer_norm("decoder.ln", "decoder/layer_norm")
    projection = get("decoder/projection/weight")
    if projection.shape != state["decoder.token_embedding.weight"].shape or not torch.equal(
        projection, state["decoder.token_embedding.weight"]
    ):
        raise ConversionError("the decoder output projection is not tied to the token embedding, as openai-whisper needs")

    # Flags that change the computation: refuse a model whose flags openai-whisper does not follow.
    expected_flags = {
        "decoder/activation": 3,  # common_spec.Activation.GELU
        "decoder/scale_embeddings": 0,
        "decoder/pre_norm": 1,
        "decoder/alibi": 0,
        "decoder/start_from_zero_embedding": 0,
    }
    for name, expected in expected_flags.items():
        if name in variables and _scalar(variables, name) != expected:
            raise ConversionError(f"{name} is {_scalar(variables, name)}, openai-whisper needs {expected}")
    leftover = sorted(name for name, value in variables.items() if name not in used and value.shape != ())
    if leftover:
        raise ConversionError(f"variables with no openai-whisper counterpart: {', '.join(leftover[:8])}")

    conv1 = state["encoder.conv1.weight"]
    audio_pos, text_pos = state["encoder.positional_embedding"], state["decoder.positional_embedding"]
    dims = ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=audio_pos.shape[0],
        n_audio_state=audio_pos.shape[1],
        n_audio_head=_scalar(variables, "encoder/num_heads"),
        n_audio_layer=n_audio_layer,
        n_vocab=state["decoder.token_embedding.weight"].shape[0],
        n_text_ctx=text_pos.shape[0],
        n_text_state=text_pos.shape[1],
        n_text_head=_scalar(variables, "decoder/num_heads"),
        n_text_layer=n_text_layer,
    )
    if dims.n_audio_state % dims.n_audio_head or dims.n_text_state % dims.n_text_head:
        raise ConversionError(f"inconsistent dimensions {dims}")
    return dims, state


# -- conversion and cache -----------------------------------------------------------


def _model_bin(ct2_dir: Path) -> Path:
    model_bin = Path(ct2_dir) / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"{ct2_dir} is not a CTranslate2 model directory (no model.bin)")
    return model_bin


def convert(ct2_dir: Path, output: Path) -> Path:
    """Convert the CTranslate2 Whisper model in ``ct2_dir`` into an openai-whisper checkpoint at ``output``.

    The file is written atomically (readers see the old file or the whole new one).
    Raises ``ConversionError`` when ``ct2_dir`` holds no CTranslate2 Whisper model.
    """
    import torch

    model_bin = _model_bin(ct2_dir)
    spec, revision, variables = read_ct2_variables(model_bin)
    if spec != "WhisperSpec":
        raise ConversionError(f"{model_bin} holds a CTranslate2 {spec or 'unnamed'} model, not a Whisper one")
    dims, state = whisper_state_dict(variables)
    log.info("converting %s (WhisperSpec revision %d): %s", model_bin, revision, dims)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(output) as handle:
        torch.save({"dims": asdict(dims), "model_state_dict": state}, handle)
    return output


_cache_lock = threading.Lock()


def converted_checkpoint(ct2_dir: Path, cache_dir: Path) -> Path:
    """The openai-whisper checkpoint for ``ct2_dir``, converted once into ``cache_dir``.

    ``cache_dir/<model dir name>.pt`` is reused only while its JSON sidecar
    (``.pt.json``) records the sha256 of the source ``model.bin`` and of the
    checkpoint and both still match; otherwise the model is converted again
    (hashing both takes well under a second for ``base``, converting about one).
    Two sources whose directories share a name would take turns overwriting
    each other's checkpoint (correct, but slow): give them separate cache dirs.
    Conversion is deterministic, so processes racing on one cache agree.
    """
    model_bin = _model_bin(ct2_dir)
    cache_dir = Path(cache_dir)
    checkpoint = cache_dir / f"{Path(ct2_dir).resolve().name}.pt"
    sidecar = checkpoint.with_name(checkpoint.name + ".json")
    with _cache_lock:  # one conversion at a time within the process; writes are atomic across processes
        source_sha256 = sha256_file(model_bin)
        try:
            recorded = json.loads(sidecar.read_text())
            if (
                recorded.get("format") == _SIDECAR_FORMAT
                and recorded.get("source_sha256") == source_sha256
                and recorded.get("checkpoint_sha256") == sha256_file(checkpoint)
            ):
                return checkpoint
            log.info("cached checkpoint %s is stale or altered; converting again", checkpoint)
        except (OSError, ValueError, AttributeError):
            pass  # no cache yet, or an unreadable sidecar
        sidecar.unlink(missing_ok=True)  # never a sidecar that vouches for a half-replaced pair
        convert(ct2_dir, checkpoint)
        record = {
            "format": _SIDECAR_FORMAT,
            "source": str(model_bin),
            "source_sha256": source_sha256,
            "checkpoint_sha256": sha256_file(checkpoint),
        }
        atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
        return checkpoint


def alignment_heads(ct2_dir: Path) -> list[tuple[int, int]] | None:
    """(decoder layer, head) pairs used for word timestamps, from the CTranslate2 ``config.json``."""
    try:
        config = json.loads((Path(ct2_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    heads = config.get("alignment_heads") if isinstance(config, dict) else None
    try:
        return [(int(layer), int(head)) for layer, head in heads] if heads else None
    except (TypeError, ValueError):
        log.warning("ignoring malformed alignment_heads in %s", Path(ct2_dir) / "config.json")
        return None


def load_model(ct2_dir: Path, cache_dir: Path, device: str = "cpu") -> whisper.Whisper:
    """An openai-whisper model for the CTranslate2 model in ``ct2_dir`` (converted and cached in ``cache_dir``).

    Unlike ``whisper.load_model(path)``, this also sets the model's alignment
    heads from ``config.json``: openai-whisper otherwise uses every head of the
    last half of the decoder for word timestamps, less accurately.
    """
    import torch
    import whisper

    model = whisper.load_model(str(converted_checkpoint(ct2_dir, cache_dir)), device=device)
    dims = model.dims
    heads = [
        (layer, head) for layer, head in alignment_heads(ct2_dir) or () if 0 <= layer < dims.n_text_layer and 0 <= head < dims.n_text_head
    ]
    if heads:
        mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse().to(model.device), persistent=False)
    return model


# -- CLI -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m transcription.asr.whisper_convert",
        description="Convert a CTranslate2 Whisper model directory into an openai-whisper checkpoint.",
    )
    parser.add_argument("ct2_dir", type=Path, help="directory holding the CTranslate2 model.bin")
    parser.add_argument("output", type=Path, help="checkpoint to write (for whisper.load_model)")
    args = parser.parse_args(argv)
    try:
        written = convert(args.ct2_dir, args.output)
    except ConversionError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
