from __future__ import annotations

from transcription.settings import DEFAULT_GATEWAY_PORT, CommonSettings


class GatewaySettings(CommonSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = DEFAULT_GATEWAY_PORT
    # Smallest interval between two transcription_progress messages on one socket.
    gateway_progress_interval_seconds: float = 0.5
    # Web origins, besides the gateway's own, whose pages may open /ws/transcribe
    # and POST to the API (comma-separated, e.g. https://ui.example.org; "*" = any).
    gateway_allowed_origins: str = ""
    # Diarization that has not finished this long after it started is abandoned:
    # the transcript is delivered without speakers and a warning (0 = no limit).
    gateway_diarization_timeout_seconds: float = 1800.0
