"""Shared code of the transcription platform.

`transcription.v1` holds the generated protobuf/gRPC stubs (`make protos`); the
modules beside it are the small pieces every service and client shares:
settings, logging, error mapping, the gRPC server bootstrap, audio decoding and
the typed client library.
"""
