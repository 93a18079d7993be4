"""The remote-write wire format: schema, compression, grouping, Retry-After, TLS."""

from __future__ import annotations

import email.utils
import ssl
import struct
import subprocess
import time
from pathlib import Path

import cramjam
import pytest

from biometrics.errors import InvalidValueError, SecretFileError
from biometrics.ship import Encoder, RemoteWriteClient, RemoteWriteOptions, decode
from biometrics.ship.remote_write import group, retry_after_seconds

from ._receiver import Receiver


def test_the_message_matches_the_remote_write_1_0_schema_byte_for_byte() -> None:
    """Field numbers and wire types as in prompb: checked against a hand-built message."""
    label = b"\x0a\x08__name__" + b"\x12\x01x"
    sample = b"\x09" + struct.pack("<d", 1.5) + b"\x10" + bytes([0xE8, 0x07])  # ts 1000
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    want = b"\x0a" + bytes([len(series)]) + series
    assert Encoder().message([((("__name__", "x"),), [(1000, 1.5)])]) == want


def test_bodies_are_snappy_block_format_and_round_trip() -> None:
    """A body is snappy block format (not the framed stream) around the protobuf message, decodes
    back to the series, and a second encode with the bounded cache gives the same.
    """
    series = [
        ((("__name__", "a_total"), ("job", "j")), [(1, 2.0), (3, float("inf"))]),
        ((("__name__", "b"),), [(-5, -0.0)]),
    ]
    encoder = Encoder(max_cached=1)  # the cache is bounded and cleared, not grown
    body = encoder.encode(series)
    assert not body.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert bytes(cramjam.snappy.decompress_raw(body)) == encoder.message(series)
    assert decode(body) == series
    assert decode(encoder.encode(series)) == series


def test_group_orders_samples_and_keeps_the_later_of_one_millisecond() -> None:
    """group() sorts each series' samples by time; of two samples in one millisecond the later
    line wins and the other is counted as dropped.
    """
    a, b = (("__name__", "a"),), (("__name__", "b"),)
    series, dropped = group([(a, 5, 1.0), (b, 1, 9.0), (a, 3, 2.0), (a, 5, 4.0)])
    assert dict(series) == {a: [(3, 2.0), (5, 4.0)], b: [(1, 9.0)]}
    assert dropped == 1


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    """Retry-After in seconds or as an HTTP date (relative to now, never negative); anything else
    or no header gives None.
    """
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(email.utils.formatdate(1_000_030, usegmt=True), 1_000_000) == 30
    assert retry_after_seconds(email.utils.formatdate(10, usegmt=True), 1_000_000) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    """With --ca-file the self-signed receiver is trusted; without it, no request goes through."""
    cert, key = _certificate(tmp_path)
    receiver = Receiver()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    url = receiver.url.replace("http://", "https://")
    body = Encoder().encode([((("__name__", "a"),), [(1, 1.0)])])
    try:
        trusted = RemoteWriteClient(RemoteWriteOptions(url, ca_file=str(cert), timeout=5))
        assert trusted.send(body).status == 204
        trusted.close()
        default = RemoteWriteClient(RemoteWriteOptions(url, timeout=5))
        answer = default.send(body)
        default.close()
    finally:
        receiver.close()
    assert answer.status is None
    assert "CERTIFICATE_VERIFY_FAILED" in answer.message
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("reply", [(400, {}, "bad"), (302, {"Location": "/elsewhere"}, "")])
def test_answers_carry_status_and_text(reply: tuple[int, dict[str, str], str]) -> None:
    """A refusal's answer carries the HTTP status and the receiver's text, or for a redirect where
    it pointed.
    """
    receiver = Receiver(answer=lambda _n, _s: reply)
    client = RemoteWriteClient(RemoteWriteOptions(receiver.url, timeout=5))
    try:
        answer = client.send(Encoder().encode([((("__name__", "a"),), [(1, 1.0)])]))
    finally:
        client.close()
        receiver.close()
    assert answer.status == reply[0]
    assert (reply[2] or "redirected to /elsewhere") in answer.message


@pytest.mark.parametrize(
    "url", ["not-a-url", "127.0.0.1:9090/api/v1/write", "ftp://h/x", "http:///api/v1/write",
            "http://h:99999/x", "http://h:port/x"],
)  # fmt: skip
def test_a_url_without_http_scheme_and_host_is_refused_at_construction(url: str) -> None:
    """A typo in the URL must stop the daemon at start, with an example of a good one."""
    with pytest.raises(InvalidValueError, match=r"e\.g\. http://127\.0\.0\.1:9090/api/v1/write"):
        RemoteWriteOptions(url)


def test_credentials_that_would_never_be_sent_are_refused() -> None:
    """A password without a user, or two kinds of Authorization, is a mistake, not a choice."""
    with pytest.raises(InvalidValueError, match="give the user name too"):
        RemoteWriteOptions("http://h/", basic_auth_password_file="pw")
    with pytest.raises(InvalidValueError, match="keep one of them"):
        RemoteWriteOptions("http://h/", bearer_token_file="t", basic_auth_user="u")


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("bearer_token_file", None, "no such file"),
        ("bearer_token_file", "\n", "is empty; write the token"),
        ("basic_auth_password_file", "", "is empty; write the password"),
        ("ca_file", "not a certificate\n", "holds no usable PEM certificate"),
        ("ca_file", "directory", "is a directory"),
    ],
)
def test_secret_files_are_checked_when_the_client_is_made(
    tmp_path: Path, option: str, content: str | None, message: str
) -> None:
    """Missing, empty, directory or garbage: SecretFileError naming the file and the option."""
    path = tmp_path / "secret"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    given = {option: str(path)}
    if option == "basic_auth_password_file":
        given["basic_auth_user"] = "u"
    options = RemoteWriteOptions("https://127.0.0.1:1/", **given)  # type: ignore[arg-type]
    with pytest.raises(SecretFileError, match=message) as info:
        RemoteWriteClient(options)
    assert info.value.filename == str(path)
    assert f"--{option.replace('_', '-')}" in str(info.value)


def test_a_shorter_timeout_can_be_given_per_request() -> None:
    """A deadline close by cuts the wait for one answer below the configured timeout."""
    receiver = Receiver(answer=lambda _n, _s: ("slow", 2.0, 204))
    client = RemoteWriteClient(RemoteWriteOptions(receiver.url, timeout=30))
    started = time.monotonic()
    try:
        answer = client.send(Encoder().encode([((("__name__", "a"),), [(1, 1.0)])]), timeout=0.2)
    finally:
        client.close()
        receiver.close()
    assert answer.status is None and "no answer within 0.2s" in answer.message
    assert time.monotonic() - started < 1.5
