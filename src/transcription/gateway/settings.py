from __future__ import annotations

from pydantic import SecretStr

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
    # A downstream service that accepts the connection but does not answer it (hung,
    # or a port that swallows traffic) is given up on after this long, per attempt,
    # and the client is told which service (0 = gRPC's own connect deadline, ~20 s).
    gateway_connect_timeout_seconds: float = 10.0
    # Host names (the Host header) the gateway answers to, comma-separated; empty =
    # the address it listens on plus localhost names (a wildcard listener: any
    # host, so set it). Refuses DNS rebinding: a hostile name pointed at this
    # address gets 400 on every endpoint but /health and /metrics.
    gateway_allowed_hosts: str = ""
    # When set, every endpoint but /health, /metrics and the page itself needs it:
    # "Authorization: Bearer <token>" (REST, the OpenAI API) or the WebSocket
    # subprotocol "token.<token>" (or a first message {"type": "auth", "token": ...}).
    gateway_api_token: SecretStr = SecretStr("")
    # Largest upload (the page's file picker, the OpenAI API's file).
    gateway_max_upload_bytes: int = 2 * 1024**3
    # Largest JSON body and WebSocket message.
    gateway_max_message_bytes: int = 64 * 1024
    # WebSocket sessions open at once; more are refused.
    gateway_max_sessions: int = 100
    # Jobs (WebSocket requests, uploads, OpenAI calls, video-info) one client
    # address may start per minute (0 = no limit).
    gateway_rate_limit_per_minute: int = 60
    # Finished transcripts kept for export (/api/transcripts/<job_id>.<format>).
    gateway_transcripts_kept: int = 500
    # Files longer than this are cut (in pauses) into pieces of about
    # GATEWAY_FANOUT_PIECE_SECONDS, transcribed at once (at most
    # GATEWAY_FANOUT_PARALLEL at a time) on the ASR replicas and streamed back
    # in order (0 = never cut).
    gateway_fanout_min_seconds: float = 600.0
    gateway_fanout_piece_seconds: float = 300.0
    gateway_fanout_parallel: int = 4
