"""Build realistic packet conversations with scapy and write them as a pcap.

Each helper writes a complete exchange as a real stack would (TCP handshake,
data, acknowledgements, FIN), so Suricata's stream engine, tshark and scapy
all see the same thing. Times are explicit: a capture built twice is identical.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

from sensor.capture.quic import seal_client_initial
from sensor.demo.tls import (
    change_cipher_spec_and_data,
    client_hello,
    client_hello_record,
    server_hello_record,
)

DEFAULT_START = 1_767_261_600.0  # 2026-01-01 10:00:00 UTC
DLT_EN10MB = 1  # pcap link type: Ethernet
CLIENT_MAC = "02:00:00:00:00:01"
GATEWAY_MAC = "02:00:00:00:00:fe"


class Traffic:
    """Collects timestamped frames; ``write`` saves them sorted by time."""

    def __init__(self, vlan: int | None = None) -> None:
        self.vlan = vlan
        self.frames: list[tuple[float, bytes]] = []
        self._next_port = 40000

    def client_port(self) -> int:
        self._next_port = 40000 if self._next_port >= 65000 else self._next_port + 1
        return self._next_port

    def frame(self, time: float, source: str, destination: str, layer4: Packet) -> bytes:
        """One Ethernet frame (802.1Q-tagged if the builder has a VLAN) at ``time``."""
        is_v6 = ipaddress.ip_address(source).version == 6
        network = IPv6(src=source, dst=destination) if is_v6 else IP(src=source, dst=destination)
        link = Ether(src=CLIENT_MAC, dst=GATEWAY_MAC)
        if self.vlan is not None:
            link = link / Dot1Q(vlan=self.vlan)
        # Kept as bytes: lengths and checksums are computed once, and scapy does
        # not re-dissect (its TLS layer keeps session state across packets).
        frame = bytes(link / network / layer4)
        self.frames.append((time, frame))
        return frame

    def udp_exchange(self, time: float, client: str, server: str, port: int,
                     request: bytes | Packet, response: bytes | Packet | None = None,
                     client_port: int | None = None) -> None:
        sport = client_port or self.client_port()
        self.frame(time, client, server, UDP(sport=sport, dport=port) / request)
        if response is not None:
            self.frame(time + 0.02, server, client, UDP(sport=port, dport=sport) / response)

    def tcp_connection(self, time: float, client: str, server: str, port: int,
                       requests: Iterable[bytes] = (), responses: Iterable[bytes] = (),
                       client_port: int | None = None) -> float:
        """A full TCP connection; returns the time of its last packet."""
        sport = client_port or self.client_port()
        c_seq, s_seq = 1000, 5000
        step = 0.005
        now = time

        def send(from_client: bool, flags: str, payload: bytes = b"") -> None:
            nonlocal now, c_seq, s_seq
            if from_client:
                segment = TCP(sport=sport, dport=port, flags=flags, seq=c_seq, ack=s_seq)
                self.frame(now, client, server, segment / Raw(payload) if payload else segment)
                c_seq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
            else:
                segment = TCP(sport=port, dport=sport, flags=flags, seq=s_seq, ack=c_seq)
                self.frame(now, server, client, segment / Raw(payload) if payload else segment)
                s_seq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
            now += step

        send(True, "S")
        send(False, "SA")
        send(True, "A")
        for request, response in _pairs(list(requests), list(responses)):
            if request:
                send(True, "PA", request)
                send(False, "A")
            if response:
                send(False, "PA", response)
                send(True, "A")
        send(True, "FA")
        send(False, "FA")
        send(True, "A")
        return now - step

    # -- application exchanges -------------------------------------------------

    def dns(self, time: float, client: str, resolver: str, name: str,
            answers: Iterable[tuple[str, str, str]] = (), rrtype: str = "A",
            over_tcp: bool = False, ttl: int = 300, transaction_id: int = 0x1234) -> None:
        """A lookup and its answer; ``answers`` are (name, type, data) records."""
        query = DNS(id=transaction_id, rd=1, qd=DNSQR(qname=name, qtype=rrtype))
        records = [DNSRR(rrname=rrname, type=kind, ttl=ttl, rdata=data)
                   for rrname, kind, data in answers]
        response = DNS(id=transaction_id, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=rrtype),
                       an=records)
        if over_tcp:
            self.tcp_connection(time, client, resolver, 53, [_length_prefixed(bytes(query))],
                                [_length_prefixed(bytes(response))])
        else:
            self.udp_exchange(time, client, resolver, 53, query, response)

    def tls(self, time: float, client: str, server: str, sni: str, port: int = 443) -> float:
        """A TLS connection that says ``sni`` in its ClientHello."""
        return self.tcp_connection(time, client, server, port,
                                   [client_hello_record(sni), change_cipher_spec_and_data()],
                                   [server_hello_record()])

    def quic(self, time: float, client: str, server: str, sni: str, port: int = 443,
             connection_id: bytes = bytes.fromhex("8394c8f03e515708")) -> None:
        """A QUIC v1 client Initial carrying a ClientHello for ``sni`` (no handshake follows)."""
        hello = seal_client_initial(client_hello(sni, quic=True), connection_id)
        self.udp_exchange(time, client, server, port, Raw(hello))

    def http(self, time: float, client: str, server: str, host: str, path: str = "/",
             port: int = 80) -> float:
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\n"
                   "Accept: */*\r\n\r\n").encode()
        response = b"HTTP/1.1 204 No Content\r\nServer: demo\r\nContent-Length: 0\r\n\r\n"
        return self.tcp_connection(time, client, server, port, [request], [response])

    def write(self, path: Path | str) -> Path:
        """Write every frame, sorted by time, to a classic pcap file."""
        path = Path(path)
        writer = PcapWriter(str(path), linktype=DLT_EN10MB, sync=False)
        try:
            writer.write_header(None)
            for time, frame in sorted(self.frames, key=lambda item: item[0]):
                seconds, micro = divmod(round(time * 1_000_000), 1_000_000)
                writer.write_packet(frame, sec=seconds, usec=micro)
        finally:
            writer.close()
        return path


def _length_prefixed(message: bytes) -> bytes:
    """DNS over TCP frames each message with its 2-byte length (RFC 1035 4.2.2)."""
    return struct.pack("!H", len(message)) + message


def _pairs(requests: list[bytes], responses: list[bytes]) -> list[tuple[bytes, bytes]]:
    count = max(len(requests), len(responses))
    return [(requests[i] if i < len(requests) else b"", responses[i] if i < len(responses)
             else b"") for i in range(count)]
