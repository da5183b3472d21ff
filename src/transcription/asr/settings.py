from __future__ import annotations

from pydantic import SecretStr

from transcription.settings import DEFAULT_ASR_PORT, CommonSettings


class AsrSettings(CommonSettings):
    asr_host: str = "127.0.0.1"
    asr_port: int = DEFAULT_ASR_PORT
    # Size limit of the transcripts cache; least recently used results go first (0 = none).
    asr_cache_max_bytes: int = 512 * 1024**2
    # Prometheus metrics over HTTP on this port (0 = not served).
    asr_metrics_port: int = 0
    # Model used when a request names none: a bundled name (base, tiny.en), a
    # directory name under $DATA_DIR/models/local/, or an allow-listed hub id.
    asr_default_model: str = "base"
    # Hub models (faster-whisper sizes or Hugging Face ids) that requests may
    # name, comma-separated, e.g. "large-v3,Systran/faster-whisper-small".
    # Nothing else from the hub is ever loaded.
    asr_model_allowlist: str = ""
    # Loaded models idle this long are unloaded (0 = never); at most this many stay loaded.
    asr_model_idle_ttl_seconds: float = 900.0
    asr_max_loaded_models: int = 2
    # Comma-separated models loaded at start-up instead of on first use.
    asr_preload_models: str = ""
    asr_device: str = "auto"  # auto, cpu, cuda
    asr_compute_type: str = "auto"  # auto = float16 on CUDA, int8 on CPU
    # CTranslate2 threads per model; 0 = every core of the machine. `make run`
    # gives the ASR all cores but the diarizer's unless this is set.
    asr_cpu_threads: int = 0
    # Transcriptions decoded at once, and how many may wait for a slot before
    # new ones are refused with RESOURCE_EXHAUSTED.
    # faster-whisper's BatchedInferencePipeline: chunks decoded per batch. -1 = auto
    # (16 on CUDA, where batching is 4x faster; sequential on CPU, where it saves
    # time on long files but delays the first segment to the end of each batch);
    # 0 = always sequential. A request's own batch_size wins.
    asr_batch_size: int = -1
    # Transcriptions decoded at once; 0 = 4 on CUDA (batched requests then share
    # batches, asr/batching.py), 1 on CPU (its cores are already all busy).
    asr_max_concurrent: int = 0
    asr_max_queue: int = 16
    # Never reach the model hub, even for allow-listed names.
    asr_offline: bool = False
    hf_token: SecretStr | None = None
    deepgram_api_key: SecretStr | None = None
    # Deepgram's API root (https://api.deepgram.com unless set: a self-hosted Deepgram),
    # and how long one transcription may take there, retries included.
    deepgram_base_url: str | None = None
    deepgram_timeout_seconds: float = 600.0
