from transcription.downloader.server import run

run()
