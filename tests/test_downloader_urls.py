"""URL normalisation, YouTube fallbacks and redaction (transcription.downloader.urls): pure functions, no network.

Hostnames are only ever strings here: example.com / example.org / YouTube's, nothing connects.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transcription.downloader.urls import REDACTED, alternatives, normalise, redact, redact_text, youtube_video_id

VIDEO_ID = "dQw4w9WgXcQ"
ODD_ID = "a-b_C9d-E_0"  # every character class an id may hold
WATCH = f"https://www.youtube.com/watch?v={VIDEO_ID}"
PLAYLIST_ID = "PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf"


# -- normalise: YouTube videos ------------------------------------------------------

YOUTUBE_VIDEO_FORMS = [
    f"https://www.youtube.com/watch?v={VIDEO_ID}",
    f"http://www.youtube.com/watch?v={VIDEO_ID}",
    f"https://youtube.com/watch?v={VIDEO_ID}",
    f"https://m.youtube.com/watch?v={VIDEO_ID}",
    f"https://music.youtube.com/watch?v={VIDEO_ID}",
    f"HTTPS://WWW.YouTube.COM/watch?v={VIDEO_ID}",
    f"https://www.youtube.com:443/watch?v={VIDEO_ID}",
    f"https://www.youtube.com./watch?v={VIDEO_ID}",
    f"https://youtu.be/{VIDEO_ID}",
    f"http://youtu.be/{VIDEO_ID}",
    f"https://youtu.be/{VIDEO_ID}/",
    f"https://www.youtube.com/shorts/{VIDEO_ID}",
    f"https://youtube.com/shorts/{VIDEO_ID}?feature=share",
    f"https://www.youtube.com/embed/{VIDEO_ID}",
    f"https://www.youtube.com/embed/{VIDEO_ID}?start=42",
    f"https://www.youtube.com/live/{VIDEO_ID}",
    f"https://www.youtube.com/live/{VIDEO_ID}?si=abcdef",
    f"https://www.youtube.com/v/{VIDEO_ID}",
    f"https://www.youtube-nocookie.com/embed/{VIDEO_ID}",
    f"https://youtube-nocookie.com/embed/{VIDEO_ID}?start=10",
    # no scheme
    f"youtu.be/{VIDEO_ID}",
    f"youtube.com/watch?v={VIDEO_ID}",
    f"www.youtube.com/watch?v={VIDEO_ID}",
    f"m.youtube.com/watch?v={VIDEO_ID}",
    f"music.youtube.com/watch?v={VIDEO_ID}",
    f"youtube.com/shorts/{VIDEO_ID}",
    f"//www.youtube.com/watch?v={VIDEO_ID}",
    # timestamps, share ids, tracking and playlist parameters: all dropped
    f"https://youtu.be/{VIDEO_ID}?t=42",
    f"https://youtu.be/{VIDEO_ID}?si=Xy12_ab-CD&t=1m30s",
    f"https://www.youtube.com/watch?v={VIDEO_ID}&t=42s",
    f"https://www.youtube.com/watch?t=42&v={VIDEO_ID}",
    f"https://www.youtube.com/watch?v={VIDEO_ID}&feature=youtu.be",
    f"https://www.youtube.com/watch?v={VIDEO_ID}&pp=ygUEcmljaw%3D%3D",
    f"https://www.youtube.com/watch?v={VIDEO_ID}&list={PLAYLIST_ID}&index=3",
    f"https://www.youtube.com/watch?list={PLAYLIST_ID}&v={VIDEO_ID}&index=3",
    f"https://www.youtube.com/watch?v={VIDEO_ID}#t=30",
    f"https://www.youtube.com/watch/?v={VIDEO_ID}",
    # pasted with surrounding whitespace
    f"  https://youtu.be/{VIDEO_ID}\n",
    f"\thttps://www.youtube.com/watch?v={VIDEO_ID} ",
]


@pytest.mark.parametrize("url", YOUTUBE_VIDEO_FORMS)
def test_every_youtube_video_form_normalises_to_watch_url(url: str) -> None:
    assert normalise(url) == WATCH
    assert youtube_video_id(url) == VIDEO_ID


@pytest.mark.parametrize(
    "url",
    [
        f"https://youtu.be/{ODD_ID}",
        f"https://www.youtube.com/watch?v={ODD_ID}",
        f"youtube.com/shorts/{ODD_ID}",
        f"https://www.youtube-nocookie.com/embed/{ODD_ID}",
    ],
)
def test_video_id_may_hold_dash_and_underscore(url: str) -> None:
    assert normalise(url) == f"https://www.youtube.com/watch?v={ODD_ID}"
    assert youtube_video_id(url) == ODD_ID


# -- normalise: YouTube playlists -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"https://www.youtube.com/playlist?list={PLAYLIST_ID}",
        f"https://youtube.com/playlist?list={PLAYLIST_ID}&si=abc",
        f"youtube.com/playlist?list={PLAYLIST_ID}",
        f"https://m.youtube.com/playlist?list={PLAYLIST_ID}#top",
        f"https://music.youtube.com/playlist?feature=share&list={PLAYLIST_ID}",
    ],
)
def test_playlist_only_url_keeps_its_list(url: str) -> None:
    assert normalise(url) == f"https://www.youtube.com/playlist?list={PLAYLIST_ID}"
    assert youtube_video_id(url) is None
    assert alternatives(normalise(url)) == []


# -- normalise: not YouTube videos ----------------------------------------------------

NOT_YOUTUBE_VIDEOS = [
    "https://www.youtube.com/watch?v=short",  # id too short
    f"https://www.youtube.com/watch?v={VIDEO_ID}X",  # id too long
    "https://www.youtube.com/watch?v=dQw4w9WgXc!",  # a character an id never holds
    "https://www.youtube.com/watch",  # no v at all
    f"https://www.youtube.com/watch?vv={VIDEO_ID}",
    f"https://www.youtube.com/shorts/{VIDEO_ID}/extra",
    f"https://www.youtube.com/channel/{VIDEO_ID}",
    "https://www.youtube.com/",
    "https://www.youtube.com/playlist?list=",
    "https://youtu.be/",
    "https://youtu.be/short",
    f"https://example.com/watch?v={VIDEO_ID}",  # v= elsewhere means nothing
    f"https://notyoutube.com/watch?v={VIDEO_ID}",
    f"https://youtube.com.example.org/watch?v={VIDEO_ID}",
    f"https://youtube.com@example.org/watch?v={VIDEO_ID}",  # the host is example.org
    f"https://example.com/youtu.be/{VIDEO_ID}",
    f"ftp://www.youtube.com/watch?v={VIDEO_ID}",
]


@pytest.mark.parametrize("url", NOT_YOUTUBE_VIDEOS)
def test_not_a_youtube_video(url: str) -> None:
    assert youtube_video_id(url) is None
    assert alternatives(url) == []
    assert normalise(url) != WATCH


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("youtube.com/watch?v=short", "youtube.com/watch?v=short"),
        (f"notyoutube.com/watch?v={VIDEO_ID}", f"notyoutube.com/watch?v={VIDEO_ID}"),
        (f"https://example.com/watch?v={VIDEO_ID}&t=42", f"https://example.com/watch?v={VIDEO_ID}&t=42"),
        ("https://www.youtube.com/watch?v=short&t=1", "https://www.youtube.com/watch?v=short&t=1"),
    ],
)
def test_not_a_youtube_video_keeps_path_and_query(url: str, expected: str) -> None:
    assert normalise(url) == expected


# -- normalise: every other URL -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a.mp3", "https://example.com/a.mp3"),
        ("  https://example.com/a.mp3\n", "https://example.com/a.mp3"),
        ("HTTPS://EXAMPLE.COM/Path/A.MP3", "https://example.com/Path/A.MP3"),  # path keeps its case
        ("https://example.com/a.mp3#part-2", "https://example.com/a.mp3"),
        ("https://example.com#top", "https://example.com"),
        ("http://example.com:80/a.mp3", "http://example.com/a.mp3"),
        ("https://example.com:443/a.mp3", "https://example.com/a.mp3"),
        ("https://example.com:/a.mp3", "https://example.com/a.mp3"),  # empty port
        ("http://example.com:443/a.mp3", "http://example.com:443/a.mp3"),  # not http's default
        ("https://example.com:80/a.mp3", "https://example.com:80/a.mp3"),
        ("https://example.com:8443/a.mp3", "https://example.com:8443/a.mp3"),
        ("https://Example.ORG:443", "https://example.org"),
        ("http://[::1]:80/a.mp3", "http://[::1]/a.mp3"),
        ("http://[2001:DB8::1]:8080/a", "http://[2001:db8::1]:8080/a"),
        # the query is kept exactly: order, repeats, encoding, blank values
        ("https://example.com/a?z=1&a=2&z=3", "https://example.com/a?z=1&a=2&z=3"),
        ("https://example.com/a?x=%2F%20+y&flag&=&", "https://example.com/a?x=%2F%20+y&flag&=&"),
        ("https://example.com/a?", "https://example.com/a?"),
        ("https://example.com/A%2Fb//c/./d/../e", "https://example.com/A%2Fb//c/./d/../e"),
        # userinfo is part of what is fetched; its case is kept (redact() is for logging)
        ("https://User:PW@Example.com:443/a", "https://User:PW@example.com/a"),
        ("Ftp://Example.com/a", "ftp://example.com/a"),
    ],
)
def test_generic_normalisation(url: str, expected: str) -> None:
    assert normalise(url) == expected


@pytest.mark.parametrize(
    "url",
    ["example.com/a.mp3", "Example.com/A.mp3", "example.com:8080/a", "//example.com/a.mp3", "not a url", "", "mailto:x@example.com"],
)
def test_no_scheme_and_not_youtube_is_left_to_the_caller(url: str) -> None:
    assert normalise(url) == url
    assert normalise(f"  {url} ") == url


IDEMPOTENCE_SAMPLES = YOUTUBE_VIDEO_FORMS + NOT_YOUTUBE_VIDEOS + ["https://example.com:443/a?b=1#c", "HTTP://EXAMPLE.ORG:80"]


@pytest.mark.parametrize("url", IDEMPOTENCE_SAMPLES)
def test_normalise_is_idempotent_on_samples(url: str) -> None:
    assert normalise(normalise(url)) == normalise(url)


URL_PIECES = st.sampled_from(
    [
        "https://", "http://", "HTTP://", "ftp://", "//", "", "youtu.be", "www.youtube.com", "YouTube.com",
        "example.com", "EXAMPLE.org", ":80", ":443", ":", "@", "user:pw@", "/", "/watch", "/shorts/", "/embed/",
        "/playlist", "?", "&", "v=", "list=", "t=42", VIDEO_ID, "short", "PL12", "#", "#frag", " ", "\n", "[::1]",
    ]
)  # fmt: skip


@given(st.lists(URL_PIECES, max_size=10).map("".join))
def test_normalise_is_idempotent_on_generated_urls(url: str) -> None:
    assert normalise(normalise(url)) == normalise(url)


@given(st.text())
def test_normalise_is_idempotent_and_total_on_any_text(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


# -- alternatives ---------------------------------------------------------------------


def test_alternatives_of_the_normalised_form() -> None:
    assert alternatives(WATCH) == [f"https://youtu.be/{VIDEO_ID}", f"https://m.youtube.com/watch?v={VIDEO_ID}"]


def test_alternatives_leave_out_exactly_the_form_passed_in() -> None:
    every_form = [WATCH, f"https://youtu.be/{VIDEO_ID}", f"https://m.youtube.com/watch?v={VIDEO_ID}"]
    for form in every_form:
        assert alternatives(form) == [other for other in every_form if other != form]


@pytest.mark.parametrize("url", YOUTUBE_VIDEO_FORMS)
def test_alternatives_all_name_the_same_video(url: str) -> None:
    others = alternatives(normalise(url))
    assert len(others) == 2
    assert all(normalise(other) == WATCH for other in others)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a.mp3", f"https://example.com/watch?v={VIDEO_ID}", "", "not a url", "youtube.com/watch?v=short"],
)
def test_no_alternatives_for_anything_else(url: str) -> None:
    assert alternatives(url) == []


# -- redact ---------------------------------------------------------------------------

SECRET_PARAM_NAMES = [
    "token", "access_token", "id_token", "refresh_token", "auth", "authorization", "key", "api_key", "apikey",
    "sig", "signature", "password", "pass", "pwd", "secret", "client_secret", "session", "sessionid",
    "credential", "code", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential", "Signature", "Policy", "Key-Pair-Id",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_PARAM_NAMES)
def test_each_secret_param_is_redacted(name: str) -> None:
    url = f"https://example.com/a.mp3?keep=1&{name}=s3cr3t&also=2"
    assert redact(url) == f"https://example.com/a.mp3?keep=1&{name}={REDACTED}&also=2"


@pytest.mark.parametrize("name", ["TOKEN", "Access_Token", "API_KEY", "ApiKey", "X-Amz-Signature", "X-GOOG-SIGNATURE", "SIGNATURE"])
def test_secret_param_names_match_in_any_case(name: str) -> None:
    assert redact(f"https://example.com/?{name}=s3cr3t") == f"https://example.com/?{name}={REDACTED}"


@pytest.mark.parametrize("encoded_name", ["api%5Fkey", "Api%5FKey", "%74oken"])
def test_percent_encoded_secret_names_are_recognised(encoded_name: str) -> None:
    assert redact(f"https://example.com/?{encoded_name}=s3cr3t") == f"https://example.com/?{encoded_name}={REDACTED}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@example.com/a.mp3", "https://example.com/a.mp3"),
        ("https://user@example.com/a.mp3", "https://example.com/a.mp3"),
        ("https://user:p%40ss@example.com:8443/a", "https://example.com:8443/a"),
        ("https://user:p@ss@example.com/a", "https://example.com/a"),  # an unencoded @ in the password
        ("ftp://user:pass@example.org/", "ftp://example.org/"),
        ("//user:pass@example.com/a", "//example.com/a"),
        ("user:pass@example.com/a", "example.com/a"),
        ("https://user:pass@example.com?token=t", f"https://example.com?token={REDACTED}"),
        ("https://user:pass@[::1]:8080/a", "https://[::1]:8080/a"),
    ],
)
def test_userinfo_is_removed(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_non_secret_params_survive_in_order_and_encoding() -> None:
    url = "https://example.com/a?z=1&b=%2F+x&flag&t=42&format=mp3&keyword=x&monkey=y&passage=3&token"
    assert redact(url) == url  # "keyword", "monkey", "passage" only contain secret-looking words; bare "token" has no value


def test_path_and_fragment_without_params_survive() -> None:
    url = "https://example.com/token/key/a.mp3#section-2"
    assert redact(url) == url


def test_fragment_params_are_redacted_too() -> None:
    # OAuth's implicit flow returns the token in the fragment
    assert redact("https://example.org/cb#access_token=abc&state=xyz") == f"https://example.org/cb#access_token={REDACTED}&state=xyz"


def test_cloudfront_signed_url() -> None:
    url = "https://d111111abcdef8.cloudfront.net/audio.mp3?Expires=1700000000&Signature=abc~def__&Key-Pair-Id=APKAEXAMPLE"
    assert redact(url) == f"https://d111111abcdef8.cloudfront.net/audio.mp3?Expires=1700000000&Signature={REDACTED}&Key-Pair-Id={REDACTED}"
    custom = "https://example.com/a.mp3?Policy=eyJTdGF0ZW1lbnQiOlt7&Signature=sig&Key-Pair-Id=K2JCJMDEHXQW5F"
    assert redact(custom) == f"https://example.com/a.mp3?Policy={REDACTED}&Signature={REDACTED}&Key-Pair-Id={REDACTED}"


def test_aws_presigned_url() -> None:
    url = (
        "https://examplebucket.s3.amazonaws.com/test.mp3?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        "&response-content-type=audio%2Fmpeg"
    )
    redacted = redact(url)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "FQoGZXIvYXdzEXAMPLE", "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"):
        assert secret not in redacted
    assert redacted.startswith("https://examplebucket.s3.amazonaws.com/test.mp3?X-Amz-Algorithm=")
    assert redacted.endswith("&response-content-type=audio%2Fmpeg")  # not secret, kept as it was
    assert redacted.count(REDACTED) == 7  # every x-amz-* parameter


def test_gcs_presigned_url() -> None:
    url = "https://storage.googleapis.com/b/o.mp3?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40example.com&X-Goog-Signature=0a1b2c&alt=media"
    assert "sa%40example.com" not in redact(url) and "0a1b2c" not in redact(url)
    assert redact(url).endswith("&alt=media")


def test_credentials_in_an_embedded_url_are_removed() -> None:
    assert redact("https://example.com/r?to=https://u:p@example.org/x") == "https://example.com/r?to=https://example.org/x"
    # an @ in the query is not userinfo
    assert redact("https://example.com?email=a@example.org") == "https://example.com?email=a@example.org"


@pytest.mark.parametrize("url", ["", "not a url", "https://", "http://[::1", "https://example.com/%zz?%zz=%zz", "\x00://\udcff@"])
def test_redact_handles_odd_strings(url: str) -> None:
    assert isinstance(redact(url), str)


def test_redact_never_raises_even_on_a_non_string() -> None:
    assert redact(None) == "None"  # type: ignore[arg-type]
    assert redact_text(None) == "None"  # type: ignore[arg-type]


@given(st.text())
def test_redact_never_raises_and_is_idempotent(text: str) -> None:
    assert redact(redact(text)) == redact(text)


@given(
    user=st.text(alphabet=st.characters(blacklist_characters="/?#@"), min_size=1),
    password=st.text(alphabet=st.characters(blacklist_characters="/?#&"), min_size=1),
)
def test_no_password_survives_redaction(user: str, password: str) -> None:
    assert redact(f"https://{user}:{password}@example.com/a?token={password}") == f"https://example.com/a?token={REDACTED}"


# -- redact_text ------------------------------------------------------------------------


def test_aiohttp_connect_error_loses_its_userinfo() -> None:
    message = "Cannot connect to host user:pw@example.com:443 ssl:default [Connection refused]"
    assert redact_text(message) == "Cannot connect to host example.com:443 ssl:default [Connection refused]"


def test_url_in_a_message_is_redacted_and_punctuation_kept() -> None:
    message = "fetch failed for https://u:p@example.com/x?token=abc... giving up"
    assert redact_text(message) == f"fetch failed for https://example.com/x?token={REDACTED}... giving up"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://example.com/a?sig=abc&x=1 -> 403", f"GET https://example.com/a?sig={REDACTED}&x=1 -> 403"),
        ("(see https://example.com/a?key=k).", f"(see https://example.com/a?key={REDACTED})."),
        ("url='https://u:p@example.com/a' failed", "url='https://example.com/a' failed"),
        ('url="http://example.org/?password=hunter2"', f'url="http://example.org/?password={REDACTED}"'),
        (
            "redirected https://u:p@example.com/ -> https://example.org/?api_key=k",
            f"redirected https://example.com/ -> https://example.org/?api_key={REDACTED}",
        ),
        ("stray ftp://u:p@ in text", "stray ftp:// in text"),
        ("two: a:b@example.com and c:d@example.org", "two: example.com and example.org"),
        ("at 12:30 user@example.com wrote", "at 12:30 user@example.com wrote"),  # no password: left alone
        ("ssl:default [Connection refused] key: value", "ssl:default [Connection refused] key: value"),
        ("no urls here", "no urls here"),
        ("", ""),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@given(st.text())
def test_redact_text_never_raises(text: str) -> None:
    assert isinstance(redact_text(text), str)
