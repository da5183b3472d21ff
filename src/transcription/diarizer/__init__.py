"""Speaker diarization core: who spoke when, on bundled offline weights or a pyannote pipeline."""

import os
import warnings

# Set before any pyannote import: pyannote.audio 4 reports usage to a remote
# collector unless told not to, and warns at import time that torchcodec (its
# file decoder) is missing. Audio is always passed in memory here, so torchcodec
# is never needed and that warning is noise.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
warnings.filterwarnings("ignore", message=r"(?s).*torchcodec is not installed")
