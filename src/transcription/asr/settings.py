from __future__ import annotations

from pydantic import SecretStr

from transcription.settings import DEFAULT_ASR_PORT, CommonSettings


class AsrSettings(CommonSettings):
    asr_host: str = "127.0.0.1"
    asr_port: int = DEFAULT_ASR_PORT
    # Model used when a request names none: a bundled name (base, tiny.en),
    # a faster-whisper size or hub id (large-v3, Systran/faster-whisper-small),
    # or a local CTranslate2 model directory.
    asr_default_model: str = "base"
    # Comma-separated models loaded at start-up instead of on first use.
    asr_preload_models: str = ""
    asr_device: str = "auto"  # auto, cpu, cuda
    asr_compute_type: str = "auto"  # auto = float16 on CUDA, int8 on CPU
    asr_cpu_threads: int = 0  # 0 = CTranslate2's default (all cores)
    # Transcriptions decoded at once, and how many may wait for a slot before
    # new ones are refused with RESOURCE_EXHAUSTED.
    asr_max_concurrent: int = 1
    asr_max_queue: int = 16
    # Never reach the model hub; only bundled and local models load.
    asr_offline: bool = False
    hf_token: SecretStr | None = None
    deepgram_api_key: SecretStr | None = None
