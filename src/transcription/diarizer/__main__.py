from transcription.diarizer.server import run

run()
