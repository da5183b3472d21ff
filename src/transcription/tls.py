"""TLS and mutual TLS on the gRPC links, built from the ``GRPC_TLS_*`` settings in one place.

Off by default: with none of the settings every link is plain text, as before.

* A server listens with TLS only when ``GRPC_TLS_CERT`` and ``GRPC_TLS_KEY`` are
  set; with ``GRPC_TLS_CLIENT_AUTH`` it also requires a client certificate signed
  by ``GRPC_TLS_CA`` (mutual TLS).
* A client (gateway, CLI, the ASR and diarizer reading from the downloader, the
  launcher's health probe) uses TLS when ``GRPC_TLS_CA``, ``GRPC_TLS_CLIENT_CERT``
  or ``GRPC_TLS_CERT`` is set, so a process that serves TLS never talks plain
  text to its peers. It verifies servers against ``GRPC_TLS_CA`` (else the
  system's roots) and presents ``GRPC_TLS_CLIENT_CERT`` when set.

Every file is read and checked when the process starts (a certificate without
its key, an unreadable file, a key that does not match): a misconfiguration stops
the service with a message naming the setting and path, never a quiet fallback
to plain text. Messages name paths only; key material never reaches a log.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from transcription.settings import CommonSettings


class TlsConfigError(ValueError):
    """The ``GRPC_TLS_*`` settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ClientTls:
    """What a client channel needs: credentials, and the name to check instead of the target's host."""

    credentials: grpc.ChannelCredentials
    server_name: str = ""

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _read_pem(setting: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting}={path}: cannot read it ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{setting}={path}: not a PEM file")
    return data


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise TlsConfigError("encrypted private keys are not supported")


def _read_pair(cert_setting: str, cert_path: str, key_setting: str, key_path: str) -> tuple[bytes, bytes]:
    """Certificate chain and key, checked to belong together (OpenSSL would only find out at the first handshake)."""
    chain, key = _read_pem(cert_setting, cert_path), _read_pem(key_setting, key_path)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_path, key_path, password=_no_password)
    except TlsConfigError as exc:
        raise TlsConfigError(f"{key_setting}={key_path}: {exc}") from None
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or "unusable"
        raise TlsConfigError(
            f"{cert_setting}={cert_path} with {key_setting}={key_path}: not a certificate and its key ({reason})"
        ) from None
    return chain, key


def _read_ca(settings: CommonSettings) -> bytes:
    data = _read_pem("GRPC_TLS_CA", settings.grpc_tls_ca)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"GRPC_TLS_CA={settings.grpc_tls_ca}: not a CA certificate bundle ({exc})") from None
    return data


def _check_combination(settings: CommonSettings) -> None:
    if bool(settings.grpc_tls_cert) != bool(settings.grpc_tls_key):
        raise TlsConfigError("GRPC_TLS_CERT and GRPC_TLS_KEY go together: set both (TLS) or neither (plain text)")
    if bool(settings.grpc_tls_client_cert) != bool(settings.grpc_tls_client_key):
        raise TlsConfigError("GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY go together: set both or neither")
    if settings.grpc_tls_client_auth and not settings.grpc_tls_cert:
        raise TlsConfigError("GRPC_TLS_CLIENT_AUTH needs GRPC_TLS_CERT and GRPC_TLS_KEY: mutual TLS is TLS first")
    if settings.grpc_tls_client_auth and not settings.grpc_tls_ca:
        raise TlsConfigError("GRPC_TLS_CLIENT_AUTH needs GRPC_TLS_CA, the CA that client certificates must be signed by")


def server_credentials(settings: CommonSettings) -> grpc.ServerCredentials | None:
    """The credentials a gRPC server listens with, or None for plain text."""
    _check_combination(settings)
    if not settings.grpc_tls_cert:
        return None
    chain, key = _read_pair("GRPC_TLS_CERT", settings.grpc_tls_cert, "GRPC_TLS_KEY", settings.grpc_tls_key)
    client_ca = _read_ca(settings) if settings.grpc_tls_client_auth else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca, require_client_auth=settings.grpc_tls_client_auth)


def client_tls(settings: CommonSettings) -> ClientTls | None:
    """What this process's gRPC clients connect with, or None for plain text."""
    _check_combination(settings)
    if not (settings.grpc_tls_ca or settings.grpc_tls_client_cert or settings.grpc_tls_cert):
        return None
    roots = _read_ca(settings) if settings.grpc_tls_ca else None  # None: the system's roots
    chain = key = None
    if settings.grpc_tls_client_cert:
        chain, key = _read_pair("GRPC_TLS_CLIENT_CERT", settings.grpc_tls_client_cert, "GRPC_TLS_CLIENT_KEY", settings.grpc_tls_client_key)
    credentials = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)
    return ClientTls(credentials, settings.grpc_tls_server_name)


def describe(settings: CommonSettings) -> str:
    """How a server listens, for its start-up log line."""
    if not settings.grpc_tls_cert:
        return "plain text"
    return "mutual TLS" if settings.grpc_tls_client_auth else "TLS"
