# syntax=docker/dockerfile:1.7
#
# Gateway image (Starlette + uvicorn: the web UI, REST, WebSocket /ws/transcribe).
# Build from the repository root; BuildKit reads gateway.Dockerfile.dockerignore:
#
#   docker buildx build -f deploy/docker/gateway.Dockerfile -t ghcr.io/owner/transcription-gateway:0.2.0 .
#
# The gateway keeps no state: it needs no data volume, only a writable /tmp.

FROM python:3.11.14-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# -- builder ----------------------------------------------------------------------
FROM base AS builder
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}"
COPY pyproject.toml README.md ./
COPY src/ src/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-build-isolation "/build[gateway]" \
    && python -c "import transcription.gateway.app, uvicorn"

# -- runtime ----------------------------------------------------------------------
FROM base AS runtime
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="transcription-gateway" \
      org.opencontainers.image.description="Transcription platform: gateway (web UI, REST, WebSocket)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/healthcheck.py /opt/transcription/
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000
WORKDIR /opt/transcription
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=6s --start-period=20s --retries=3 \
    CMD ["python", "/opt/transcription/healthcheck.py", "gateway"]
CMD ["transcription-gateway"]
