import uvicorn

from gateway.app import create_app
from gateway.settings import GatewaySettings
from transcription import log

settings = GatewaySettings()
log.configure("gateway", settings.log_level)
uvicorn.run(
    create_app(settings),
    host=settings.gateway_host,
    port=settings.gateway_port,
    log_level=settings.log_level.lower(),
    # In-flight WebSocket jobs get this long after SIGTERM.
    timeout_graceful_shutdown=int(settings.grpc_grace_seconds),
)
