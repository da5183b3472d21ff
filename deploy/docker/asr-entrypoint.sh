#!/bin/sh
# Entry point of the ASR image: links baked weights into DATA_DIR, then runs the command.
#
# The `models` build target assembles the bundled Whisper weights at build time
# under /opt/transcription/models/bundled (read-only, inside the image). The ASR
# and `transcription-models` look for them under $DATA_DIR/models/bundled, which
# lives on the writable data volume, so a symlink points there: the service finds
# the files already checked and writes nothing. In the default image the baked
# directory does not exist and this does nothing (the service, or the Kubernetes
# init container running `transcription-models`, assembles the weights instead).
set -eu
baked="${BAKED_MODELS_DIR:-/opt/transcription/models/bundled}"
link="${DATA_DIR:-/data}/models/bundled"
if [ -d "$baked" ] && [ ! -e "$link" ] && [ ! -L "$link" ]; then
    mkdir -p "$(dirname "$link")"
    ln -s "$baked" "$link"
fi
exec "$@"
