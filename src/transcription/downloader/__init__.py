"""Downloader service: fetches audio once, stores it by sha256, serves it to the others."""
