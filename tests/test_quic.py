"""QUIC Initial protection: our reader against RFC 9001's published example and our writer."""

from __future__ import annotations

import pytest

from sensor.capture.packets import sni_of_client_hello
from sensor.capture.quic import (
    CryptoStream,
    QuicError,
    client_initial_keys,
    open_client_initial,
    open_client_initials,
    seal_client_initial,
)
from sensor.demo.tls import client_hello


def test_keys_match_rfc_9001_appendix_a() -> None:
    keys = client_initial_keys(bytes.fromhex("8394c8f03e515708"))
    assert keys.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert keys.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert keys.header_protection.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_sealed_initial_opens_to_the_same_client_hello() -> None:
    hello = client_hello("push.copy9.com", quic=True)
    datagram = seal_client_initial(hello, bytes.fromhex("0011223344556677"), b"\x01\x02")
    assert len(datagram) == 1200
    opened = open_client_initial(datagram)
    assert opened.crypto == ((0, hello),)
    assert sni_of_client_hello(opened.crypto[0][1]) == "push.copy9.com"


@pytest.mark.parametrize("damage", [lambda d: d[:30], lambda d: d[:100] + b"\x00" + d[101:],
                                    lambda d: b"\x40" + d[1:]])
def test_damaged_initials_raise_quic_error(damage) -> None:
    datagram = seal_client_initial(client_hello("a.example", quic=True), bytes(8))
    with pytest.raises(QuicError):
        open_client_initial(damage(datagram))


def test_coalesced_initials_and_frames_out_of_order_rebuild_the_hello() -> None:
    hello = client_hello("split.copy9.com", quic=True)
    cid = bytes.fromhex("0011223344556677")
    first = seal_client_initial(b"", cid, pieces=[(40, hello[40:70]), (0, hello[:40])], size=0)
    second = seal_client_initial(b"", cid, packet_number=1, pieces=[(70, hello[70:])])
    initials = open_client_initials(first + second)
    assert [initial.crypto for initial in initials] == [
        ((40, hello[40:70]), (0, hello[:40])), ((70, hello[70:]),)]
    stream = CryptoStream()
    for offset, piece in reversed([p for initial in initials for p in initial.crypto]):
        stream.add(offset, piece)
    stream.add(10, hello[10:50])  # a retransmission changes nothing
    assert stream.data == hello
    assert sni_of_client_hello(stream.data) == "split.copy9.com"


def test_a_crypto_stream_is_bounded() -> None:
    with pytest.raises(QuicError):
        CryptoStream().add(70_000, b"x")
