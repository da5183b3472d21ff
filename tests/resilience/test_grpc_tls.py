"""TLS and mutual TLS on every gRPC link: the right certificates get in, nobody else does.

A CA, a server certificate (127.0.0.1 and localhost), a client certificate and a
stranger's CA and certificate are made here with `cryptography`. One system runs
with mutual TLS for the whole module (the launcher's health probe speaks it too),
and a lone downloader shows server-only TLS and the name override. Every refusal
is paired with the same call succeeding with the right credentials, so a refused
call is the TLS check at work, not a wrong port.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from surfaces import SERVING, health

from conftest import JFK_FLAC, JFK_TEXT, NETGUARD, ROOT, console_command, free_port, running, start_gateway, wer, ws_job
from transcription import errors, tls
from transcription.clients import AsrClient, DiarizerClient, DownloaderClient
from transcription.launcher import Ports, ServiceGroup, _grpc_serving
from transcription.settings import CommonSettings

CLIENTS = {"downloader": DownloaderClient, "asr": AsrClient, "diarizer": DiarizerClient}
SERVICE_NAMES = {"downloader": "transcription.v1.Downloader", "asr": "transcription.v1.Asr", "diarizer": "transcription.v1.Diarizer"}


# -- certificates ----------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: ``<name>.pem`` (certificate) and ``<name>.key`` for ca, server, client, stranger_ca, stranger."""

    directory: Path

    def cert(self, name: str) -> str:
        return str(self.directory / f"{name}.pem")

    def key(self, name: str) -> str:
        return str(self.directory / f"{name}.key")


def _issue(pki: Pki, name: str, issuer: str | None, *, ca: bool = False, sans=(), usage=None) -> None:
    """Write ``name``'s key and certificate, signed by ``issuer`` (None: self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())  # EC: generated in milliseconds, unlike RSA
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {name}")])
    if issuer is None:
        issuer_name, issuer_key = subject, key
    else:
        issuer_name = x509.load_pem_x509_certificate(Path(pki.cert(issuer)).read_bytes()).subject
        issuer_key = serialization.load_pem_private_key(Path(pki.key(issuer)).read_bytes(), password=None)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    Path(pki.cert(name)).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    Path(pki.key(name)).write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    _issue(pki, "ca", None, ca=True)
    server_names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    _issue(pki, "server", "ca", sans=server_names, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    _issue(pki, "client", "ca", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    _issue(pki, "stranger_ca", None, ca=True)
    _issue(pki, "stranger", "stranger_ca", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return pki


def client_settings(pki: Pki, *, ca: str = "ca", client: str | None = "client", server_name: str = "") -> CommonSettings:
    """A client's settings: verify servers with ``ca``'s certificate, present ``client``'s (None: no certificate)."""
    return CommonSettings(
        grpc_tls_ca=pki.cert(ca),
        grpc_tls_client_cert=pki.cert(client) if client else "",
        grpc_tls_client_key=pki.key(client) if client else "",
        grpc_tls_server_name=server_name,
    )


def server_env(pki: Pki, *, client_auth: bool) -> dict[str, str]:
    """What a service is started with: its certificate, and (mutual TLS) the CA clients must come from."""
    env = {"GRPC_TLS_CERT": pki.cert("server"), "GRPC_TLS_KEY": pki.key("server")}
    if client_auth:
        env.update(GRPC_TLS_CA=pki.cert("ca"), GRPC_TLS_CLIENT_AUTH="true")
        # the services are clients too (ASR and diarizer read from the downloader)
        env.update(GRPC_TLS_CLIENT_CERT=pki.cert("client"), GRPC_TLS_CLIENT_KEY=pki.key("client"))
    return env


async def cache_stats(client_class, port: int, client_tls: tls.ClientTls | None):
    async with client_class(f"127.0.0.1:{port}", tls=client_tls) as client:
        return await client.cache_stats()


# -- one system with mutual TLS on every link ----------------------------------


@pytest.fixture(scope="module")
def mtls_system(pki, tmp_path_factory):
    data = tmp_path_factory.mktemp("tls-data")
    group = ServiceGroup(
        Ports(free_port(), free_port(), free_port(), free_port()),
        env={
            "DATA_DIR": str(data),
            "DOWNLOADER_ALLOWED_NETWORKS": "127.0.0.0/8",
            "PYTHONPATH": str(NETGUARD),
            "GRPC_GRACE_SECONDS": "2",
            "HF_HUB_OFFLINE": "1",
            "DIARIZER_PRELOAD": "false",  # diarization is off here: no pipeline to wait for
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
            **server_env(pki, client_auth=True),
        },
        log_dir=data / "logs",
    )
    group.data_dir = data
    # start() returns once the launcher's health probe saw every service SERVING, over mutual TLS
    yield from running(group)


async def test_job_completes_over_mutual_tls(mtls_system, media, pki):
    received = await ws_job(mtls_system, {"url": media.url("jfk.flac"), "model": "tiny.en", "enable_diarization": False})
    assert received.messages[-1]["type"] == "complete", received.messages[-1]
    text = " ".join(m["text"] for m in received.of("transcription_chunk"))
    assert wer(JFK_TEXT, text) < 0.3, text  # downloader -> gateway -> ASR (reading the audio from the downloader)
    assert health(mtls_system.ports.gateway)["services"] == SERVING  # the gateway's own checks, over mutual TLS
    # the keys were read, never written out: no log holds a line of either
    logs = "".join(path.read_text() for path in (mtls_system.data_dir / "logs").glob("*.log"))
    for name in ("server", "client"):
        key_lines = Path(pki.key(name)).read_text().splitlines()[1:-1]
        assert not any(line in logs for line in key_lines)


REFUSED = {
    "plain text": lambda pki: None,
    "no client certificate": lambda pki: tls.client_tls(client_settings(pki, client=None)),
    "client certificate from another CA": lambda pki: tls.client_tls(client_settings(pki, client="stranger")),
    "server verified against another CA": lambda pki: tls.client_tls(client_settings(pki, ca="stranger_ca")),
}


@pytest.mark.parametrize("service", CLIENTS)
@pytest.mark.parametrize("case", REFUSED)
async def test_every_service_refuses_clients_without_the_right_credentials(mtls_system, pki, service, case):
    port = getattr(mtls_system.ports, service)
    with pytest.raises(errors.ServiceError) as refused:
        await cache_stats(CLIENTS[service], port, REFUSED[case](pki))
    assert isinstance(refused.value, errors.Unavailable), refused.value
    if case == "server verified against another CA":  # the client sees why; otherwise the server just hangs up
        assert "TLS handshake failed" in refused.value.message
    # the same call with the right certificate goes through (a refusal would raise)
    await cache_stats(CLIENTS[service], port, tls.client_tls(client_settings(pki)))


async def test_gateway_that_does_not_trust_the_services_says_so(mtls_system, media, pki):
    process, port = start_gateway(mtls_system, **{**server_env(pki, client_auth=True), "GRPC_TLS_CA": pki.cert("stranger_ca")})
    try:
        assert health(port)["services"] == dict.fromkeys(SERVING, "UNAVAILABLE")
        received = await ws_job(port, {"url": media.url("jfk.flac"), "model": "tiny.en"}, timeout=120)
        assert received.messages[-1]["type"] == "error"
        assert "the downloader service is unavailable (TLS handshake failed)" in received.messages[-1]["error"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cli_speaks_mutual_tls(mtls_system, pki):
    def transcribe(**tls_env: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(NETGUARD), "ASR_ADDR": f"127.0.0.1:{mtls_system.ports.asr}", **tls_env}
        command = [console_command("transcribe"), str(JFK_FLAC), "--model", "tiny.en"]  # a local file goes inline to the ASR
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    client = {"GRPC_TLS_CLIENT_CERT": pki.cert("client"), "GRPC_TLS_CLIENT_KEY": pki.key("client")}
    done = transcribe(GRPC_TLS_CA=pki.cert("ca"), **client)
    assert done.returncode == 0, done.stderr
    assert "ask not what your country can do for you" in done.stdout.lower()
    refused = transcribe(GRPC_TLS_CA=pki.cert("stranger_ca"), **client)
    assert refused.returncode == 1
    assert "error: the ASR service is unavailable (TLS handshake failed)" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_checks_speak_tls(mtls_system, pki, service):
    port = getattr(mtls_system.ports, service)
    assert _grpc_serving("127.0.0.1", port, SERVICE_NAMES[service], tls.client_tls(client_settings(pki)))
    assert not _grpc_serving("127.0.0.1", port, SERVICE_NAMES[service])  # plain text gets no answer
    # the containers' health check, with the same settings as the service it checks
    check = [sys.executable, str(ROOT / "deploy" / "docker" / "healthcheck.py"), service]
    base = {**os.environ, f"{service.upper()}_PORT": str(port)}
    with_tls = subprocess.run(check, env={**base, **server_env(pki, client_auth=True)}, capture_output=True, text=True, timeout=60)
    assert with_tls.returncode == 0, with_tls.stdout + with_tls.stderr
    assert "SERVING" in with_tls.stdout
    plain = subprocess.run(check, env=base, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1, plain.stdout


# -- server-only TLS, and the server name ------------------------------------------


@pytest.fixture(scope="module")
def tls_downloader(pki, tmp_path_factory):
    """A downloader with TLS but no client certificates required."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(tmp_path_factory.mktemp("tls-downloader")),
        "DOWNLOADER_PORT": str(port),
        **server_env(pki, client_auth=False),
    }
    process = subprocess.Popen([console_command("transcription-downloader")], env=env, stderr=subprocess.DEVNULL)
    channel = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(Path(pki.cert("ca")).read_bytes()))
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        yield port
    finally:
        channel.close()
        process.terminate()
        process.wait(timeout=30)


async def test_server_only_tls_needs_no_client_certificate(tls_downloader, pki):
    stats = await cache_stats(DownloaderClient, tls_downloader, tls.client_tls(client_settings(pki, client=None)))
    assert stats.total_files == 0
    with pytest.raises(errors.Unavailable):
        await cache_stats(DownloaderClient, tls_downloader, None)


async def test_server_name_override_is_what_the_certificate_is_checked_against(tls_downloader, pki):
    by_name = tls.client_tls(client_settings(pki, client=None, server_name="localhost"))
    assert (await cache_stats(DownloaderClient, tls_downloader, by_name)).total_files == 0
    with pytest.raises(errors.Unavailable):
        await cache_stats(DownloaderClient, tls_downloader, tls.client_tls(client_settings(pki, client=None, server_name="other.test")))


# -- misconfiguration stops the start ---------------------------------------------------


MISCONFIGURED = {
    "certificate without key": ({"GRPC_TLS_KEY": ""}, "GRPC_TLS_CERT and GRPC_TLS_KEY go together"),
    "unreadable certificate": ({"GRPC_TLS_CERT": "/nonexistent/server.pem"}, "GRPC_TLS_CERT=/nonexistent/server.pem: cannot read it"),
    "key of another certificate": ({"GRPC_TLS_KEY": "{client_key}"}, "not a certificate and its key"),
    "key file is a certificate": ({"GRPC_TLS_KEY": "{ca_cert}"}, "not a certificate and its key"),
    "client auth without CA": ({"GRPC_TLS_CLIENT_AUTH": "true", "GRPC_TLS_CA": ""}, "GRPC_TLS_CLIENT_AUTH needs GRPC_TLS_CA"),
    "CA is not PEM": ({"GRPC_TLS_CA": "{not_pem}"}, "not a PEM file"),
    "client certificate without key": ({"GRPC_TLS_CLIENT_KEY": ""}, "GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY go together"),
}


def misconfigured_env(pki: Pki, case: str) -> tuple[dict[str, str], str]:
    (pki.directory / "not-pem.txt").write_text("not a certificate\n")
    paths = {"client_key": pki.key("client"), "ca_cert": pki.cert("ca"), "not_pem": str(pki.directory / "not-pem.txt")}
    changes, message = MISCONFIGURED[case]
    return {**server_env(pki, client_auth=True), **{k: v.format(**paths) for k, v in changes.items()}}, message


@pytest.mark.parametrize("case", MISCONFIGURED)
def test_misconfiguration_is_refused_with_a_clear_message(pki, case):
    env, message = misconfigured_env(pki, case)
    settings = CommonSettings(**{name.lower(): value for name, value in env.items()})
    with pytest.raises(tls.TlsConfigError, match=message):
        tls.server_credentials(settings)
        tls.client_tls(settings)


@pytest.mark.parametrize("command", ["transcription-downloader", "transcription-gateway"])
def test_misconfigured_service_exits_at_start_instead_of_serving_plain_text(pki, tmp_path, command):
    env, message = misconfigured_env(pki, "certificate without key" if command.endswith("downloader") else "CA is not PEM")
    port = free_port()
    run_env = {
        **os.environ,
        "PYTHONPATH": str(NETGUARD),
        "DATA_DIR": str(tmp_path),
        "DOWNLOADER_PORT": str(port),
        "GATEWAY_PORT": str(port),
        **env,
    }
    ended = subprocess.run([console_command(command)], env=run_env, capture_output=True, text=True, timeout=120)
    assert ended.returncode != 0
    assert message in ended.stderr and "Traceback" not in ended.stderr, ended.stderr
    assert "PRIVATE KEY" not in ended.stderr
