"""DNS over cleartext HTTP/2 (h2c with prior knowledge) as a client sends it, built with hpack.

For tests and demonstrations of ``sensor.capture.doh``: the connection
preface, a SETTINGS frame, then one request a DNS message, ``POST`` with an
``application/dns-message`` body or ``GET`` with it in ``?dns=`` (RFC 8484).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from hpack import Encoder

from sensor.capture.doh import PREFACE

_DATA, _HEADERS, _SETTINGS = 0x0, 0x1, 0x4
_END_STREAM, _END_HEADERS = 0x1, 0x4


def http2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame (RFC 9113 4.1)."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") \
        + payload


def settings_frame() -> bytes:
    """An empty SETTINGS frame: what each side sends first."""
    return http2_frame(_SETTINGS, 0, 0)


def doh_client_stream(messages: Iterable[bytes], method: str = "POST",
                      authority: str = "resolver.example") -> bytes:
    """The client's bytes of one h2c connection carrying ``messages`` (DNS queries, wire form)."""
    encoder, data = Encoder(), PREFACE + settings_frame()
    for index, message in enumerate(messages):
        stream = 2 * index + 1
        headers = [(":method", method), (":scheme", "http"), (":authority", authority)]
        if method == "GET":
            encoded = base64.urlsafe_b64encode(message).rstrip(b"=").decode()
            block = encoder.encode([*headers, (":path", f"/dns-query?dns={encoded}"),
                                    ("accept", "application/dns-message")])
            data += http2_frame(_HEADERS, _END_HEADERS | _END_STREAM, stream, block)
        else:
            block = encoder.encode([*headers, (":path", "/dns-query"),
                                    ("content-type", "application/dns-message"),
                                    ("content-length", str(len(message)))])
            data += http2_frame(_HEADERS, _END_HEADERS, stream, block) + \
                http2_frame(_DATA, _END_STREAM, stream, message)
    return data
