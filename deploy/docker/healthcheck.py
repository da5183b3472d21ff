#!/usr/bin/env python3
"""Container health check for the four services (Docker's HEALTHCHECK).

    python healthcheck.py downloader|asr|diarizer   grpc.health.v1 Check on 127.0.0.1:$<SERVICE>_PORT; 0 when SERVING
    python healthcheck.py gateway                   GET http://127.0.0.1:$GATEWAY_PORT/health; 0 on HTTP 200

With the services' ``GRPC_TLS_*`` settings the gRPC check connects with TLS as
their clients do (CA, client certificate), checking 127.0.0.1 against the
server's certificate.

Exit status 0 is healthy, 1 unhealthy (what Docker expects). Kubernetes does not
run this: it uses its native gRPC and HTTP probes (deploy/k8s). Only the standard
library and the grpcio / grpcio-health-checking that every image installs.
"""

from __future__ import annotations

import os
import sys

GRPC_SERVICES = {"downloader": 50051, "asr": 50052, "diarizer": 50053}
HTTP_SERVICES = {"gateway": 8000}
HOST = os.environ.get("HEALTHCHECK_HOST", "127.0.0.1")
TIMEOUT = float(os.environ.get("HEALTHCHECK_TIMEOUT_SECONDS", "4"))


def port(service: str, default: int) -> int:
    return int(os.environ.get(f"{service.upper()}_PORT") or default)


def grpc_channel(grpc, target: str, options: list):
    """Plain text, or TLS when the ``GRPC_TLS_*`` settings make the services' clients use it (transcription.tls)."""
    env = os.environ
    if not (env.get("GRPC_TLS_CA") or env.get("GRPC_TLS_CLIENT_CERT") or env.get("GRPC_TLS_CERT")):
        return grpc.insecure_channel(target, options=options)

    def read(name: str) -> bytes | None:
        if not env.get(name):
            return None
        with open(env[name], "rb") as pem:
            return pem.read()

    credentials = grpc.ssl_channel_credentials(read("GRPC_TLS_CA"), read("GRPC_TLS_CLIENT_KEY"), read("GRPC_TLS_CLIENT_CERT"))
    return grpc.secure_channel(target, credentials, options=options)


def check_grpc(service: str) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"{HOST}:{port(service, GRPC_SERVICES[service])}"
    # no proxy: the check is for this container's own listener
    with grpc_channel(grpc, target, [("grpc.enable_http_proxy", 0)]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return False, f"{service} at {target}: {exc.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{service} at {target}: {status}"


def check_http(service: str) -> tuple[bool, str]:
    import urllib.error
    import urllib.request

    url = f"http://{HOST}:{port(service, HTTP_SERVICES[service])}/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT) as response:
            return response.status == 200, f"{service} at {url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{service} at {url}: HTTP {exc.code}"
    except OSError as exc:
        return False, f"{service} at {url}: {exc}"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in {**GRPC_SERVICES, **HTTP_SERVICES}:
        print(f"usage: {argv[0]} {'|'.join([*GRPC_SERVICES, *HTTP_SERVICES])}", file=sys.stderr)
        return 2
    service = argv[1]
    healthy, message = check_grpc(service) if service in GRPC_SERVICES else check_http(service)
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
