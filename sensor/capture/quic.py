"""QUIC v1 Initial packet protection (RFC 9001 section 5), both ways.

Initial packets are encrypted with keys anyone can derive from the
destination connection id, so a passive sensor can read the ClientHello
inside. ``open_client_initial`` reads one, ``open_client_initials`` every
Initial coalesced in a datagram; ``seal_client_initial`` builds one (the demo
traffic and the tests use it, and Suricata and tshark decrypting our packets
is the check that both directions are right). Chrome 124 and later spread
the ClientHello over several CRYPTO frames, out of order, and over several
Initial packets: ``CryptoStream`` puts the pieces back by offset.
Not handled: QUIC v2 and draft versions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

QUIC_V1 = 0x00000001
_INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_FRAME_PADDING, _FRAME_PING, _FRAME_ACK, _FRAME_ACK_ECN, _FRAME_CRYPTO = 0, 1, 2, 3, 6
_NOT_ZERO = re.compile(rb"[^\x00]")


class QuicError(ValueError):
    """Not a readable QUIC v1 client Initial packet."""


@dataclass(frozen=True, slots=True)
class InitialKeys:
    key: bytes
    iv: bytes
    header_protection: bytes


def _expand_label(secret: bytes, label: str, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


@functools.lru_cache(maxsize=1024)
def client_initial_keys(destination_cid: bytes) -> InitialKeys:
    """The client's Initial keys, derived from the connection id it chose."""
    extract = hmac.HMAC(_INITIAL_SALT_V1, hashes.SHA256())
    extract.update(destination_cid)
    client_secret = _expand_label(extract.finalize(), "client in", 32)
    return InitialKeys(_expand_label(client_secret, "quic key", 16),
                       _expand_label(client_secret, "quic iv", 12),
                       _expand_label(client_secret, "quic hp", 16))


def _mask(keys: InitialKeys, sample: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(keys.header_protection), modes.ECB()).encryptor()
    return encryptor.update(sample) + encryptor.finalize()


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """A QUIC variable-length integer at ``offset``: (value, next offset)."""
    if offset >= len(data):
        raise QuicError("truncated varint")
    length = 1 << (data[offset] >> 6)
    if offset + length > len(data):
        raise QuicError("truncated varint")
    value = data[offset] & 0x3F
    for byte in data[offset + 1:offset + length]:
        value = (value << 8) | byte
    return value, offset + length


def encode_varint(value: int) -> bytes:
    for length, prefix in ((1, 0x00), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if value < 1 << (8 * length - 2):
            encoded = bytearray(value.to_bytes(length, "big"))
            encoded[0] |= prefix
            return bytes(encoded)
    raise ValueError(f"varint too large: {value}")


def is_client_initial(datagram: bytes) -> bool:
    """Cheap test: a long-header QUIC v1 Initial packet."""
    return (len(datagram) >= 7 and datagram[0] & 0xF0 == 0xC0
            and int.from_bytes(datagram[1:5], "big") == QUIC_V1)


@dataclass(frozen=True, slots=True)
class ClientInitial:
    """The decrypted content of a client Initial: its CRYPTO stream pieces."""

    destination_cid: bytes
    crypto: tuple[tuple[int, bytes], ...]  # (offset, data)


def open_client_initial(datagram: bytes) -> ClientInitial:
    """Remove header protection, decrypt and return the CRYPTO frames; QuicError if not one."""
    return _open(datagram)[0]


def open_client_initials(datagram: bytes) -> list[ClientInitial]:
    """Every client Initial coalesced in ``datagram`` (RFC 9000 12.2); QuicError if none.

    Reading stops at the first coalesced packet that is not a readable Initial
    (a 0-RTT or Handshake packet has other keys).
    """
    initials = []
    while True:
        initial, end = _open(datagram)
        initials.append(initial)
        datagram = datagram[end:]
        if not is_client_initial(datagram):
            return initials
        try:
            _open(datagram)
        except QuicError:
            return initials


def _open(datagram: bytes) -> tuple[ClientInitial, int]:
    if not is_client_initial(datagram):
        raise QuicError("not a QUIC v1 Initial packet")
    offset = 5
    dcid_length = datagram[offset]
    dcid = datagram[offset + 1:offset + 1 + dcid_length]
    offset += 1 + dcid_length
    if offset >= len(datagram):
        raise QuicError("truncated header")
    offset += 1 + datagram[offset]  # source connection id
    token_length, offset = read_varint(datagram, offset)
    offset += token_length
    payload_length, pn_offset = read_varint(datagram, offset)
    if pn_offset + payload_length > len(datagram) or payload_length < 20:
        raise QuicError("truncated packet")
    keys = client_initial_keys(dcid)
    mask = _mask(keys, datagram[pn_offset + 4:pn_offset + 20])
    first = datagram[0] ^ (mask[0] & 0x0F)
    pn_length = (first & 0x03) + 1
    packet_number = bytes(b ^ m for b, m in zip(datagram[pn_offset:pn_offset + pn_length],
                                                 mask[1:], strict=False))
    header = bytes([first]) + datagram[1:pn_offset] + packet_number
    nonce = (int.from_bytes(keys.iv, "big") ^ int.from_bytes(packet_number, "big")).to_bytes(
        12, "big")
    ciphertext = datagram[pn_offset + pn_length:pn_offset + payload_length]
    try:
        plaintext = AESGCM(keys.key).decrypt(nonce, ciphertext, header)
    except Exception as error:  # noqa: BLE001 - cryptography raises InvalidTag and friends
        raise QuicError(f"cannot decrypt: {type(error).__name__}") from None
    return ClientInitial(dcid, tuple(_crypto_frames(plaintext))), pn_offset + payload_length


def _crypto_frames(plaintext: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(plaintext):
        frame_type = plaintext[offset]
        offset += 1
        if frame_type == _FRAME_PADDING:  # runs of hundreds of zero bytes: skip them at once
            after = _NOT_ZERO.search(plaintext, offset)
            offset = after.start() if after else len(plaintext)
            continue
        if frame_type == _FRAME_PING:
            continue
        if frame_type == _FRAME_CRYPTO:
            start, offset = read_varint(plaintext, offset)
            length, offset = read_varint(plaintext, offset)
            frames.append((start, plaintext[offset:offset + length]))
            offset += length
        elif frame_type in (_FRAME_ACK, _FRAME_ACK_ECN):
            offset = _skip_ack(plaintext, offset, ecn=frame_type == _FRAME_ACK_ECN)
        else:
            break  # other frames are not allowed in a client's first Initial
    return frames


def _skip_ack(data: bytes, offset: int, *, ecn: bool) -> int:
    _, offset = read_varint(data, offset)  # largest acknowledged
    _, offset = read_varint(data, offset)  # delay
    ranges, offset = read_varint(data, offset)
    _, offset = read_varint(data, offset)  # first range
    for _ in range(2 * ranges + (3 if ecn else 0)):
        _, offset = read_varint(data, offset)
    return offset


def seal_client_initial(crypto: bytes, destination_cid: bytes, source_cid: bytes = b"",
                        packet_number: int = 0, crypto_offset: int = 0,
                        pieces: Sequence[tuple[int, bytes]] | None = None,
                        size: int = 1200) -> bytes:
    """A client Initial carrying ``crypto`` (a ClientHello piece), padded to ``size`` bytes.

    ``pieces``, if given, are (offset, data) CRYPTO frames written in that
    order instead (with a PING between them, as Chrome does). A packet
    coalesced behind another may be left unpadded (``size=0``).
    """
    frames = b"\x01".join(bytes([_FRAME_CRYPTO]) + encode_varint(offset)
                          + encode_varint(len(data)) + data
                          for offset, data in (pieces or [(crypto_offset, crypto)]))
    pn = packet_number.to_bytes(4, "big")
    header_start = (bytes([0xC3]) + QUIC_V1.to_bytes(4, "big")
                    + bytes([len(destination_cid)]) + destination_cid
                    + bytes([len(source_cid)]) + source_cid + encode_varint(0))
    padding = max(0, size - (len(header_start) + 2 + 4 + len(frames) + 16))
    plaintext = frames + bytes(padding)
    length = len(pn) + len(plaintext) + 16
    header = header_start + (0x4000 | length).to_bytes(2, "big") + pn
    keys = client_initial_keys(destination_cid)
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
    ciphertext = AESGCM(keys.key).encrypt(nonce, plaintext, header)
    mask = _mask(keys, ciphertext[0:16])
    pn_offset = len(header) - 4
    protected = bytearray(header + ciphertext)
    protected[0] ^= mask[0] & 0x0F
    for i in range(4):
        protected[pn_offset + i] ^= mask[1 + i]
    return bytes(protected)


MAX_CRYPTO = 65_536  # bytes of CRYPTO stream kept per connection: a ClientHello is far smaller


class CryptoStream:
    """The client's Initial CRYPTO stream, rebuilt by offset from frames in any order.

    Bounded: pieces past ``MAX_CRYPTO`` are refused (``add`` raises QuicError).
    """

    __slots__ = ("_pieces", "data")

    def __init__(self) -> None:
        self._pieces: dict[int, bytes] = {}
        self.data = b""  # the contiguous bytes from offset 0

    def add(self, offset: int, piece: bytes) -> None:
        if offset + len(piece) > MAX_CRYPTO:
            raise QuicError(f"CRYPTO data past {MAX_CRYPTO} bytes")
        if offset + len(piece) <= len(self.data):
            return  # a retransmission
        self._pieces[offset] = piece
        grew = True
        while grew:
            grew = False
            for start in list(self._pieces):
                if start <= len(self.data):
                    piece = self._pieces.pop(start)
                    if start + len(piece) > len(self.data):
                        self.data += piece[len(self.data) - start:]
                    grew = True

    def close(self) -> None:
        self._pieces.clear()
        self.data = b""
