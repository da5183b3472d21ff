"""One logging set-up for every process.

Secrets never reach a log line: the values of the settings' secret fields (pydantic ``SecretStr``:
tokens, API keys) are replaced in every record this process logs, whichever library logs it and at
any level (uvicorn's WebSocket handshake at DEBUG lists the request's headers, a token among them).
"""

from __future__ import annotations

import logging
import sys
import urllib.parse

from pydantic import BaseModel, SecretStr

REDACTED = "[redacted]"
_MIN_SECRET_CHARS = 6  # shorter values would blank out ordinary words; no real token is that short
_secrets: set[str] = set()
_installed = False  # the record factory is wrapped once per process


def configure(service: str, level: str = "INFO", secrets_from: BaseModel | None = None) -> logging.Logger:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if secrets_from is not None:
        redact_in_logs(secret_values(secrets_from))
    return logging.getLogger(service)


def secret_values(settings: BaseModel) -> list[str]:
    """The values of ``settings``' secret fields that are set."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [value.get_secret_value() for value in values if isinstance(value, SecretStr) and value.get_secret_value()]


def redact_in_logs(secrets: list[str]) -> None:
    """Replace these values (and their URL-encoded forms) in every log record from now on."""
    global _installed
    if not _installed:
        _install(logging.getLogRecordFactory())
        _installed = True
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_CHARS:
            _secrets.update({secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)})


def _scrub(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):  # longest first: a form holding another goes whole
        text = text.replace(secret, REDACTED)
    return text


def _scrub_record(record: logging.LogRecord, message: str) -> None:
    """Scrub the format and its arguments, keeping their shape (uvicorn's access log unpacks them);
    where a secret survives that (split across arguments), the scrubbed ``message`` becomes the format."""
    if isinstance(record.msg, str):
        record.msg = _scrub(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub(arg) if isinstance(arg, str) else arg for arg in record.args)
    try:
        leaks = any(secret in record.getMessage() for secret in _secrets)
    except Exception:  # noqa: BLE001 - not formattable any more
        leaks = True
    if leaks:
        record.msg, record.args = _scrub(message), None


def _install(make_record) -> None:
    def redacting(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call is reported when the record is emitted, as without this
            return record
        if any(secret in message for secret in _secrets):
            _scrub_record(record, message)
        if record.exc_info and not record.exc_text:  # the traceback, formatted now so that it can be scrubbed
            record.exc_text = _scrub(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(redacting)
