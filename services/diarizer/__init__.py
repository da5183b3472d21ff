"""Speaker diarization core: who spoke when, on bundled offline weights or a pyannote pipeline."""
