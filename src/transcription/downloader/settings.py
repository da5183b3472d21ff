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
    # Longest audio accepted, checked right after probing, before any decoding.
    downloader_max_duration_seconds: float = 4 * 3600.0
    # Seconds without any byte arriving before a connection is given up (and retried).
    downloader_read_timeout_seconds: float = 60.0
    downloader_connect_timeout_seconds: float = 15.0
    # Longest a whole download may take, retries included.
    downloader_total_timeout_seconds: float = 3 * 3600.0
    # A download slower than this, averaged over the window, is abandoned (a slow drip).
    downloader_min_bytes_per_second: int = 1024
    downloader_rate_window_seconds: float = 30.0
    # Retries after a reset connection, 5xx or 429 (resuming with Range where possible),
    # and the longest wait between two (a longer Retry-After fails the download).
    downloader_retries: int = 3
    downloader_max_retry_wait_seconds: float = 30.0
    # Downloads at once, and more admitted to wait behind them (RESOURCE_EXHAUSTED beyond).
    downloader_max_concurrent: int = 4
    downloader_max_queued: int = 32
    # Threads serving ReadAudio and cache bookkeeping (separate from downloads).
    downloader_read_threads: int = 8
    # The store's size limit in bytes (originals + canonical forms; 0 = none) and
    # age limit in seconds since last use (0 = none); least recently used go first.
    downloader_store_max_bytes: int = 20 * 1024**3
    downloader_store_max_age_seconds: float = 0.0
