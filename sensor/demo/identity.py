"""Frames by which devices make themselves known: DHCP, IPv6 neighbour discovery, mDNS.

Appended to a ``Traffic`` (sensor.demo.traffic) with each device's own MAC
address, as a phone joining the shelter's Wi-Fi would send them, so the
tests, the bench and the demo exercise device identity on real captures.
Not its job: the conversations that follow (``Traffic`` builds those).
"""

from __future__ import annotations

import ipaddress

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from sensor.demo.traffic import GATEWAY_MAC, Traffic

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
MDNS_MAC, MDNS_ADDRESS = "01:00:5e:00:00:fb", "224.0.0.251"
MDNS_MAC_V6, MDNS_ADDRESS_V6 = "33:33:00:00:00:fb", "ff02::fb"


def dhcp_lease(traffic: Traffic, time: float, mac: str, address: str, *,
               server: str = "192.168.1.1", host_name: str | None = None,
               vendor_class: str | None = None, transaction_id: int = 0x3903F326) -> None:
    """DISCOVER, OFFER, REQUEST and ACK: ``mac`` is given ``address`` by ``server``."""
    client_options: list = []
    if host_name is not None:
        client_options.append(("hostname", host_name.encode()))
    if vendor_class is not None:
        client_options.append(("vendor_class_id", vendor_class.encode()))
    chaddr = bytes.fromhex(mac.replace(":", ""))
    Step = tuple[str, bool, str, list[tuple[str, object]]]  # message, from client, yiaddr
    steps: tuple[Step, ...] = (
        ("discover", True, "0.0.0.0", []),
        ("offer", False, address, [("server_id", server), ("lease_time", 86400)]),
        ("request", True, "0.0.0.0", [("requested_addr", address), ("server_id", server)]),
        ("ack", False, address, [("server_id", server), ("lease_time", 86400)]))
    for index, (message, from_client, yiaddr, options) in enumerate(steps):
        if from_client:
            link = Ether(src=mac, dst=BROADCAST_MAC)
            network = IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
            options = [*options, *client_options]
        else:
            link = Ether(src=GATEWAY_MAC, dst=mac)
            network = IP(src=server, dst=address) / UDP(sport=67, dport=68)
        bootp = BOOTP(op=1 if from_client else 2, xid=transaction_id, chaddr=chaddr,
                      yiaddr=yiaddr, flags=0)
        dhcp = DHCP(options=[("message-type", message), *options, "end"])
        traffic.frames.append((time + 0.01 * index, bytes(link / network / bootp / dhcp)))


def neighbour_discovery(traffic: Traffic, time: float, mac: str, address: str,
                        router: str = "fe80::1") -> None:
    """A neighbour solicitation from ``address`` (with its source link-layer address) and
    an unsolicited advertisement of it (with its target link-layer address)."""
    solicitation = Ether(src=mac, dst="33:33:ff:00:00:01") / \
        IPv6(src=address, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=router) / \
        ICMPv6NDOptSrcLLAddr(lladdr=mac)
    advertisement = Ether(src=mac, dst="33:33:00:00:00:01") / \
        IPv6(src=address, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=address, R=0, S=0, O=1) / \
        ICMPv6NDOptDstLLAddr(lladdr=mac)
    traffic.frames.append((time, bytes(solicitation)))
    traffic.frames.append((time + 0.01, bytes(advertisement)))


def mdns_announcement(traffic: Traffic, time: float, mac: str, name: str, address: str) -> None:
    """An mDNS response (to a query for ``name``, a .local host name): it has ``address``.

    The question is repeated in the response: Suricata 7 logs no DNS response
    without one, so announcements without a question are learnt only by the
    packet sources.
    """
    kind = "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
    response = DNS(id=0, qr=1, aa=1, qd=DNSQR(qname=name, qtype=kind),
                   an=DNSRR(rrname=name, type=kind, rclass=0x8001, ttl=120, rdata=address))
    network = IPv6(src=address, dst=MDNS_ADDRESS_V6, hlim=255) if kind == "AAAA" else \
        IP(src=address, dst=MDNS_ADDRESS, ttl=255)
    frame = Ether(src=mac, dst=MDNS_MAC_V6 if kind == "AAAA" else MDNS_MAC) / network / \
        UDP(sport=5353, dport=5353) / response
    traffic.frames.append((time, bytes(frame)))
