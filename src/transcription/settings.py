"""Configuration shared by every service; each service extends `CommonSettings`.

Every field is read from the environment variable of the same name in upper
case (``data_dir`` -> ``DATA_DIR``); the README's configuration table lists
them all.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DOWNLOADER_PORT = 50051
DEFAULT_ASR_PORT = 50052
DEFAULT_DIARIZER_PORT = 50053
DEFAULT_GATEWAY_PORT = 8000


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # Root of every cache and model file the services write.
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    # Seconds in-flight streams get to finish after SIGTERM before they are cancelled.
    grpc_grace_seconds: float = 10.0
    # Largest gRPC message accepted or sent (inline audio travels in one message).
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    # Servers close connections older than this (0 = never), so that clients
    # balancing over DNS re-resolve and reach replicas added since.
    grpc_max_connection_age_seconds: float = 0.0

    # TLS on the gRPC links (transcription.tls; all unset = plain text). Paths to
    # PEM files, e.g. a mounted Kubernetes Secret. This server's certificate
    # chain and key: with both set it listens with TLS only.
    grpc_tls_cert: str = ""
    grpc_tls_key: str = ""
    # CA bundle clients verify servers with (unset: the system's roots); with
    # GRPC_TLS_CLIENT_AUTH also the CA a server requires client certificates from.
    grpc_tls_ca: str = ""
    # Servers require and verify a client certificate (mutual TLS).
    grpc_tls_client_auth: bool = False
    # The certificate chain and key this process presents as a client.
    grpc_tls_client_cert: str = ""
    grpc_tls_client_key: str = ""
    # Name checked against servers' certificates instead of the host in *_ADDR
    # (needed for several comma-separated IP addresses).
    grpc_tls_server_name: str = ""

    downloader_addr: str = f"127.0.0.1:{DEFAULT_DOWNLOADER_PORT}"
    asr_addr: str = f"127.0.0.1:{DEFAULT_ASR_PORT}"
    diarizer_addr: str = f"127.0.0.1:{DEFAULT_DIARIZER_PORT}"

    def subdir(self, name: str) -> Path:
        """A directory under ``data_dir``, created on first use."""
        path = self.data_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
