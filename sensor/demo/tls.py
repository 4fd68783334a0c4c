"""TLS handshake records (ClientHello with a server name, ServerHello) built with scapy.

Used by the traffic builder for TLS over TCP and, unwrapped from the record
layer, as the CRYPTO payload of QUIC Initial packets. Records are cached:
building them with scapy's TLS layer costs about a millisecond each.
"""

from __future__ import annotations

import functools

from scapy.layers.tls.extensions import (
    ProtocolName,
    ServerName,
    TLS_Ext_ALPN,
    TLS_Ext_ServerName,
    TLS_Ext_SessionTicket,
    TLS_Ext_SupportedGroups,
    TLS_Ext_SupportedVersion_CH,
    TLS_Ext_SupportedVersion_SH,
    TLS_Ext_Unknown,
)
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.record import TLS

_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F]
_RANDOM = bytes(range(32))


@functools.lru_cache(maxsize=1024)
def client_hello(sni: str, *, quic: bool = False, session_ticket: bool = False) -> bytes:
    """A TLS 1.3-capable ClientHello handshake message (no record header).

    With ``quic``, it is TLS 1.3 only and carries the QUIC transport
    parameters extension (0x39) that QUIC requires. With ``session_ticket``,
    it carries an empty session_ticket extension (35), as the hellos of
    Chrome, Firefox, OpenSSL and Android's BoringSSL do while they accept
    TLS 1.2: Suricata 7 logs an unanswered hello only when it has one
    (docs/suricata-tls-records.md).
    """
    extensions = [TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]),
                  TLS_Ext_SupportedGroups(groups=[0x001D, 0x0017]),
                  TLS_Ext_SupportedVersion_CH(versions=[0x0304] if quic else [0x0304, 0x0303])]
    if session_ticket:
        extensions.insert(2, TLS_Ext_SessionTicket())
    if quic:
        parameters = bytes([0x04, 0x04, 0x80, 0x10, 0x00, 0x00])  # initial_max_data
        extensions.append(TLS_Ext_Unknown(type=0x39, len=len(parameters), val=parameters))
        extensions.append(TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h3")]))
    hello = TLSClientHello(
        version=0x0303, gmt_unix_time=0, random_bytes=_RANDOM[4:], sid=b"",
        ciphers=_CIPHERS[:3] if quic else _CIPHERS, comp=[0], ext=extensions)
    return bytes(hello)


@functools.lru_cache(maxsize=1024)
def client_hello_record(sni: str, *, session_ticket: bool = False) -> bytes:
    """The ClientHello in a TLS record, as sent first on a TLS connection."""
    message = client_hello(sni, session_ticket=session_ticket)
    return bytes(TLS(type=22, version=0x0301, len=len(message))) + message


@functools.lru_cache(maxsize=1)
def server_hello_record() -> bytes:
    """A TLS 1.3 ServerHello record, then ChangeCipherSpec and an encrypted record.

    Suricata logs a TLS session only once it considers the handshake done,
    which for TLS 1.3 is a ServerHello that selects version 1.3.
    """
    hello = bytes(TLSServerHello(version=0x0303, gmt_unix_time=0, random_bytes=_RANDOM[4:],
                                 sid=b"", cipher=0x1301, comp=0,
                                 ext=[TLS_Ext_SupportedVersion_SH(version=0x0304)]))
    return (bytes(TLS(type=22, version=0x0303, len=len(hello))) + hello
            + change_cipher_spec_and_data())


def change_cipher_spec_and_data(size: int = 48) -> bytes:
    """A ChangeCipherSpec record and an opaque application-data record of ``size`` bytes."""
    return (b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03" + size.to_bytes(2, "big")
            + bytes(size))
