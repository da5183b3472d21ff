from transcription.asr.server import run

run()
