"""URL handling for the downloader: one canonical form per resource, and a form safe to show anyone.

Pure string functions (no network, standard library only), so they are cheap to test exhaustively.

- `normalise` gives the URL-cache key and the URL actually fetched. The same YouTube video gets pasted in
  a dozen shapes (youtu.be, shorts, embed, mobile, with `t=`/`si=`/`list=` attached); none changes the
  audio, so all become `https://www.youtube.com/watch?v=<id>` and share one cache entry. A playlist-only
  URL stays `https://www.youtube.com/playlist?list=<id>`: the downloader fetches its first item. Other
  URLs only get the lossless RFC 3986 clean-up (scheme and host case, default port, fragment) and keep
  path and query byte for byte, since servers may care. A non-YouTube string without a scheme is
  returned as is: guessing `http://` would fetch what nobody asked for, so the caller decides.
- `alternatives`: the other spellings of a YouTube video, to retry with when the first one fails.
- `redact` / `redact_text` strip credentials (userinfo, tokens and signatures in the query) before a URL
  reaches a log line, the database or an error message. They never raise: that would hide the error
  being reported.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# Optional scheme, then "//authority", then path?query#fragment (DOTALL: pasted text may hold newlines).
_HIERARCHICAL_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?//(?P<authority>[^/?#]*)(?P<rest>.*)", re.DOTALL)
# host (a bracketed IPv6 literal, or anything up to a colon) and an optional port
_HOST_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>.*))?", re.DOTALL)
_DEFAULT_PORTS = {"http": "80", "https": "443"}

_WATCH_URL = "https://www.youtube.com/watch?v="
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_PLAYLIST_ID = re.compile(r"[A-Za-z0-9_-]+")
_YOUTUBE_HOSTS = frozenset(
    {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com", "www.youtube-nocookie.com"}
)
_SHORT_LINK_HOSTS = frozenset({"youtu.be", "www.youtu.be"})
# /shorts/ID, /embed/ID, /live/ID, /v/ID: the id is the second path segment
_ID_IN_PATH_PREFIXES = frozenset({"shorts", "embed", "live", "v"})

_SECRET_PARAM_NAMES = frozenset(
    "token access_token id_token refresh_token auth authorization key api_key apikey sig signature password pass pwd"
    " secret client_secret session sessionid credential code".split()
    + ["policy", "key-pair-id"]  # CloudFront signed URLs (with "signature")
)
# AWS SigV4 and Google Cloud Storage V4 presigned URLs carry credential and signature in these.
_SECRET_PARAM_PREFIXES = ("x-amz-", "x-goog-")
REDACTED = "REDACTED"

# "//user:pass@" up to the host; stops at / ? # so an "@" later in the path or query is left alone.
_USERINFO_AFTER_SLASHES = re.compile(r"//[^/?#\s]*@")
_URL_IN_TEXT = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+"
# "user:pass@host" without a scheme, as in aiohttp's "Cannot connect to host user:pw@example.com:443":
# a whole word (start of text, or after a space, quote or bracket) with a colon before the last "@".
_BARE_USERINFO = r"(?<![^\s'\"(\[<,])[^\s/@:'\"]+:[^\s/'\"]*@(?=[^\s@])"
_CREDENTIALS_IN_TEXT = re.compile(rf"(?P<url>{_URL_IN_TEXT})|{_BARE_USERINFO}")
# Sentence punctuation after a URL in prose belongs to the prose, not to the URL.
_TRAILING_PUNCTUATION = ".,;:!?)]}"


def normalise(url: str) -> str:
    """The URL-cache key and the URL to fetch (see the module docstring for what changes and why)."""
    text = url.strip()
    youtube = _youtube_target(text)
    if youtube is not None:
        kind, ident = youtube
        return f"{_WATCH_URL}{ident}" if kind == "video" else f"https://www.youtube.com/playlist?list={ident}"
    parts = _HIERARCHICAL_URL.fullmatch(text)
    if parts is None or parts["scheme"] is None:
        return text  # no scheme: not ours to guess
    scheme = parts["scheme"][:-1].lower()
    userinfo, at, host_port = parts["authority"].rpartition("@")
    host, port = _split_host_port(host_port)
    if port is not None and port not in ("", _DEFAULT_PORTS.get(scheme)):
        host += f":{port}"
    rest = parts["rest"].partition("#")[0]
    # rstrip: whitespace before a dropped fragment or port would otherwise end the result (not idempotent)
    return f"{scheme}://{userinfo}{at}{host.lower()}{rest}".rstrip()


def youtube_video_id(url: str) -> str | None:
    """The 11-character id of the YouTube video `url` points at, in any of its pasted forms; else None."""
    youtube = _youtube_target(url.strip())
    return youtube[1] if youtube is not None and youtube[0] == "video" else None


def alternatives(url: str) -> list[str]:
    """Other spellings of the same YouTube video to retry with, without `url` itself; [] if not a video."""
    video_id = youtube_video_id(url)
    if video_id is None:
        return []
    forms = [f"{_WATCH_URL}{video_id}", f"https://youtu.be/{video_id}", f"https://m.youtube.com/watch?v={video_id}"]
    return [form for form in forms if form != url.strip()]


def redact(url: str) -> str:
    """`url` without userinfo and with secret-looking query (and fragment) values replaced by REDACTED."""
    try:
        return _USERINFO_AFTER_SLASHES.sub("//", _redact_parsed(url))
    except Exception:  # a log line must never fail because of what it logs
        return _USERINFO_AFTER_SLASHES.sub("//", str(url))


def redact_text(text: str) -> str:
    """`text` (an exception message, say) with every URL in it redacted and any bare `user:pass@` removed."""

    def replace(found: re.Match[str]) -> str:
        if found["url"] is None:
            return ""  # a bare user:pass@
        url = found["url"].rstrip(_TRAILING_PUNCTUATION)
        return redact(url) + found["url"][len(url) :]

    try:
        return _CREDENTIALS_IN_TEXT.sub(replace, text)
    except Exception:  # same reason as in redact()
        return _USERINFO_AFTER_SLASHES.sub("//", str(text))


# -- helpers ---------------------------------------------------------------------


def _split_host_port(host_port: str) -> tuple[str, str | None]:
    match = _HOST_PORT.fullmatch(host_port)
    assert match is not None  # both alternatives accept any string
    return match["host"], match["port"]


def _first_param(query: str, wanted: str) -> str:
    pairs = (piece.partition("=") for piece in query.split("&"))
    return next((unquote_plus(value) for name, _, value in pairs if unquote_plus(name) == wanted), "")


def _youtube_target(text: str) -> tuple[str, str] | None:
    """("video", id) or ("playlist", id) when `text` (stripped) is a YouTube link; None otherwise."""
    # Pasted without a scheme ("youtu.be/ID", "www.youtube.com/watch?v=ID"): parse it as https.
    parts = _HIERARCHICAL_URL.fullmatch(text) or _HIERARCHICAL_URL.fullmatch(f"https://{text}")
    if parts is None or (parts["scheme"] or "https:").lower() not in ("http:", "https:"):
        return None
    host = _split_host_port(parts["authority"].rpartition("@")[2])[0].lower().rstrip(".")
    path, _, query = parts["rest"].partition("#")[0].partition("?")
    segments = [segment for segment in path.split("/") if segment]
    first_segment = segments[0].lower() if segments else ""
    if host in _SHORT_LINK_HOSTS:
        candidate = segments[0] if len(segments) == 1 else ""
    elif host not in _YOUTUBE_HOSTS:
        return None
    elif len(segments) == 1 and first_segment == "watch":
        candidate = _first_param(query, "v")
    elif len(segments) == 2 and first_segment in _ID_IN_PATH_PREFIXES:
        candidate = segments[1]
    elif len(segments) == 1 and first_segment == "playlist":
        playlist = _first_param(query, "list")
        return ("playlist", playlist) if _PLAYLIST_ID.fullmatch(playlist) else None
    else:
        return None
    return ("video", candidate) if _VIDEO_ID.fullmatch(candidate) else None


def _redact_parsed(url: str) -> str:
    body = url.lstrip()
    lead = url[: len(url) - len(body)]
    parts = _HIERARCHICAL_URL.fullmatch(body)
    if parts is not None:
        prefix, authority, rest = f"{parts['scheme'] or ''}//", parts["authority"], parts["rest"]
    else:
        # No "//": a leading "user:pass@host" still counts as an authority, so its password goes too.
        head = re.split(r"[/?#]", body, maxsplit=1)[0]
        prefix, authority, rest = ("", head, body[len(head) :]) if "@" in head else ("", "", body)
    host = authority.rpartition("@")[2]
    before_fragment, hash_mark, fragment = rest.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    # The fragment too: OAuth's implicit flow returns "#access_token=...".
    return f"{lead}{prefix}{host}{path}{question_mark}{_redact_params(query)}{hash_mark}{_redact_params(fragment)}"


def _redact_params(params: str) -> str:
    """Each name=value in `params` kept byte for byte, except secret values; order and encoding untouched."""
    pieces = []
    for piece in params.split("&"):
        name, equals, _ = piece.partition("=")
        if equals and _is_secret_name(unquote_plus(name)):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    return "&".join(pieces)


def _is_secret_name(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in _SECRET_PARAM_NAMES or lowered.startswith(_SECRET_PARAM_PREFIXES)
