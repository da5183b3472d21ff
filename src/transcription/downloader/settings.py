from __future__ import annotations

from transcription.settings import DEFAULT_DOWNLOADER_PORT, CommonSettings


class DownloaderSettings(CommonSettings):
    downloader_host: str = "127.0.0.1"
    downloader_port: int = DEFAULT_DOWNLOADER_PORT
    # Prometheus metrics over HTTP on this port (0 = not served).
    downloader_metrics_port: int = 0
    # CIDRs that are fetched from even though they are private, loopback or
    # link-local (refused by default), e.g. "127.0.0.0/8,::1/128".
    downloader_allowed_networks: str = ""
    # NAT64 prefixes of the host network besides the well-known 64:ff9b::/96
    # (e.g. "2001:db8:64::/96"): addresses under them are judged by the IPv4
    # address they embed, which the translator would connect to.
    downloader_nat64_prefixes: str = ""
    # Largest download accepted; larger ones are stopped and removed.
    downloader_max_bytes: int = 2 * 1024**3
    # Seconds without any byte arriving before a download is abandoned.
    downloader_read_timeout_seconds: float = 60.0
    downloader_connect_timeout_seconds: float = 15.0
