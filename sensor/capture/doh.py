"""DNS queries carried in cleartext HTTP/2 (DNS over HTTPS without the TLS, RFC 8484).

A device (or an app in it) may send its lookups to a resolver over HTTP/2
with prior knowledge (h2c): ``POST`` with an ``application/dns-message``
body, or ``GET`` with the message in the ``dns`` query parameter, base64url.
``Http2Queries`` reads the client's side of such a connection, frame by
frame, and hands out the DNS messages it carried; the DNS itself is parsed
by the caller. Header blocks are decompressed with ``hpack`` (every block,
in order: the decoder's table depends on the ones before). The names are
the device's own queries: only the client's stream is read.

Non-job: HTTP/2 over TLS (encrypted: seen as a TLS hello, and as DoH to a
known resolver by ``sensor.detect.encrypted_dns``), h2c by ``Upgrade`` from
HTTP/1.1, and the server's answers.
"""

from __future__ import annotations

import base64
import struct
from urllib.parse import parse_qs, urlsplit

from hpack import Decoder, HPACKError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DNS_MESSAGE = b"application/dns-message"
MAX_MESSAGE = 65_535  # a DNS message's largest size: bodies waiting, all together
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20
_FRAME = struct.Struct("!IBI")  # length (24 bits) and type, flags, stream id (31 bits)


class Http2Error(ValueError):
    """The client's HTTP/2 stream cannot be read on: framing or header compression broke."""


class Http2Queries:
    """The client side of one cleartext HTTP/2 connection, read frame by frame.

    ``read`` takes the stream's bytes in order and says how many it used (a
    frame cut by a segment boundary waits in the caller's reassembly buffer,
    which bounds it). Bodies of ``POST`` requests wait here until their
    stream ends, at most ``MAX_MESSAGE`` bytes for all of them together.

    >>> from hpack import Encoder
    >>> path = "/dns-query?dns=AAABAAABAAAAAAAAAWEAAAEAAQ"  # a query for "a", type A
    >>> block = Encoder().encode([(":method", "GET"), (":path", path)])
    >>> frame = len(block).to_bytes(3, "big") + bytes([1, 5, 0, 0, 0, 1]) + block
    >>> messages, used = Http2Queries().read(bytearray(PREFACE + frame))
    >>> messages[0][12:], used == len(PREFACE + frame)  # the question: "a", type A, class IN
    (b'\\x01a\\x00\\x00\\x01\\x00\\x01', True)
    """

    __slots__ = ("_block", "_block_stream", "_bodies", "_decoder", "_preface")

    def __init__(self) -> None:
        self._preface = False
        self._decoder = Decoder()
        self._bodies: dict[int, bytearray] = {}  # stream id: a DNS message's body so far
        self._block = bytearray()  # a header block waiting for its CONTINUATION frames
        self._block_stream: int | None = None

    def read(self, data: bytearray) -> tuple[list[bytes], int]:
        """(DNS messages whose request ended in ``data``, bytes used); Http2Error if broken."""
        offset = 0
        if not self._preface:
            if len(data) < len(PREFACE):
                return [], 0
            if not data.startswith(PREFACE):
                raise Http2Error("not the HTTP/2 connection preface")
            self._preface, offset = True, len(PREFACE)
        messages: list[bytes] = []
        while len(data) - offset >= 9:
            word, flags, stream = _FRAME.unpack_from(data, offset)
            length, kind, stream = word >> 8, word & 0xFF, stream & 0x7FFFFFFF
            if len(data) - offset < 9 + length:
                break
            payload = bytes(data[offset + 9:offset + 9 + length])
            offset += 9 + length
            messages.extend(self._frame(kind, flags, stream, payload))
        return messages, offset

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> list[bytes]:
        if self._block_stream is not None and (kind != _CONTINUATION or
                                               stream != self._block_stream):
            raise Http2Error("a header block was interrupted")  # RFC 9113 6.10
        if kind == _HEADERS:
            payload = _unpadded(payload, flags)
            return self._header_block(stream, flags, payload[5:] if flags & _PRIORITY
                                      else payload)
        if kind == _CONTINUATION and self._block_stream == stream:
            return self._header_block(stream, flags, payload)
        body = self._bodies.get(stream) if kind == _DATA else None
        if body is None:
            return []
        body += _unpadded(payload, flags)
        if sum(map(len, self._bodies.values())) > MAX_MESSAGE:
            del self._bodies[stream]  # not a DNS message: forget it
        elif flags & _END_STREAM:
            del self._bodies[stream]
            return [bytes(body)]
        return []

    def _header_block(self, stream: int, flags: int, fragment: bytes) -> list[bytes]:
        self._block += fragment
        if not flags & _END_HEADERS:
            self._block_stream = stream
            return []
        block, self._block, self._block_stream = bytes(self._block), bytearray(), None
        try:
            headers = self._decoder.decode(block, raw=True)
        except HPACKError as error:
            raise Http2Error(f"header compression: {type(error).__name__}: {error}") from None
        fields = {bytes(name).lower(): bytes(value) for name, value in headers}
        method = fields.get(b":method", b"")
        if method == b"GET":
            query = parse_qs(urlsplit(fields.get(b":path", b"").decode("latin-1")).query)
            message = _base64url(query.get("dns", [""])[0])
            return [message] if message else []
        content_type = fields.get(b"content-type", b"").split(b";")[0].strip().lower()
        if method == b"POST" and content_type == DNS_MESSAGE and not flags & _END_STREAM:
            self._bodies[stream] = bytearray()
        return []


def _unpadded(payload: bytes, flags: int) -> bytes:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise Http2Error("padding longer than its frame")
    return payload[1:len(payload) - payload[0]]


def _base64url(text: str) -> bytes | None:
    """The ``dns`` parameter: base64url without padding (RFC 8484 4.1); None if it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) or None
    except ValueError:
        return None
