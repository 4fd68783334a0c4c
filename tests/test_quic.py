"""QUIC Initial protection: our reader against RFC 9001's published example and our writer."""

from __future__ import annotations

import pytest

from sensor.capture.packets import sni_of_client_hello
from sensor.capture.quic import (
    QuicError,
    client_initial_keys,
    open_client_initial,
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
