from transcription.gateway.app import run

run()
