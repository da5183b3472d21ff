# syntax=docker/dockerfile:1.7
#
# Downloader service image (aiohttp for direct URLs, yt-dlp for media sites).
# Build from the repository root; BuildKit reads downloader.Dockerfile.dockerignore:
#
#   docker buildx build -f deploy/docker/downloader.Dockerfile -t ghcr.io/owner/transcription-downloader:0.2.0 .
#   # with FFmpeg for yt-dlp's fix-ups (see below):
#   docker buildx build -f deploy/docker/downloader.Dockerfile --build-arg WITH_FFMPEG=true \
#       -t ghcr.io/owner/transcription-downloader:0.2.0-ffmpeg .
#
# yt-dlp's run-time needs: CA certificates (in the base image), its optional
# modules (brotli, certifi, mutagen, pycryptodomex, requests, urllib3, websockets,
# yt-dlp-ejs) and a JavaScript runtime for YouTube's signature challenges (deno,
# as a wheel), all pinned in downloader-requirements.txt. yt-dlp starts deno as a
# helper process; in Kubernetes the downloader's NetworkPolicy fences it like
# the service itself.
#
# FFmpeg is left out by default: the downloader asks yt-dlp for one audio format
# as served ("bestaudio/best"), which needs no merging or conversion, and audio is
# decoded later by PyAV's bundled libraries. The trade-off: without FFmpeg yt-dlp
# cannot repair DASH m4a containers (it warns and keeps the file, which PyAV
# normally still decodes) nor fetch the few formats only FFmpeg can download.
# WITH_FFMPEG=true adds a static FFmpeg from the pinned imageio-ffmpeg wheel
# (about 30 MB; a larger attack surface run on untrusted media).

FROM python:3.11.14-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# -- builder ----------------------------------------------------------------------
FROM base AS builder
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ARG WITH_FFMPEG=false
ARG IMAGEIO_FFMPEG_VERSION=0.8.1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}"
COPY pyproject.toml README.md ./
COPY src/ src/
COPY deploy/docker/downloader-requirements.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-build-isolation "/build[downloader]" --requirement downloader-requirements.txt \
    && if [ "$WITH_FFMPEG" = true ]; then \
        pip install "imageio-ffmpeg==${IMAGEIO_FFMPEG_VERSION}" \
        && ln -s "$(python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" /opt/venv/bin/ffmpeg; \
    fi \
    && python -c "import transcription.downloader.server, yt_dlp"

# -- runtime ----------------------------------------------------------------------
FROM base AS runtime
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="transcription-downloader" \
      org.opencontainers.image.description="Transcription platform: downloader service (aiohttp, yt-dlp, gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/healthcheck.py /opt/transcription/
# Read-only root filesystem: the store goes to /data (DATA_DIR/downloads), the
# rest (HOME, TMPDIR, yt-dlp's and deno's caches) to /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    DENO_DIR=/tmp/deno \
    DENO_NO_UPDATE_CHECK=1 \
    DOWNLOADER_HOST=0.0.0.0 \
    DOWNLOADER_PORT=50051 \
    DOWNLOADER_METRICS_PORT=9101
WORKDIR /opt/transcription
USER 10001:10001
EXPOSE 50051 9101
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=6s --start-period=30s --retries=3 \
    CMD ["python", "/opt/transcription/healthcheck.py", "downloader"]
CMD ["transcription-downloader"]
