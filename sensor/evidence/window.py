"""Cut, out of capture files, the packets of one device with one indicator around each sighting.

Two passes over the files (they are a capture given to ``analyze`` or the
live sensor's RAM ring, both bounded). The first finds the sightings: a
packet between the device and a listed address, or a DNS, TLS, QUIC or HTTP
message of the device naming the indicator (read by the shared
``PacketDecoder``, so exactly what the detection reads), and learns the
addresses the indicator resolved to for that device. The second keeps the
packets between the device and those addresses, and those of the flows that
named the indicator, within ``window`` seconds of a sighting, up to
``max_bytes``. Nothing else of the device, and nothing of any other device,
is kept. Non-job: deciding what is an alert (detection did), encryption.
"""

from __future__ import annotations

import bisect
import io
import logging
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapReader, RawPcapWriter

from sensor.capture import scan_capture
from sensor.capture.frames import LINKTYPE_ETHERNET, Segment, parse_frame
from sensor.capture.packets import PacketDecoder
from sensor.capture.scapy_reader import pcap_records
from sensor.detect.model import Alert
from sensor.errors import CaptureError
from sensor.feeds.names import domain_suffixes, normalize_domain
from sensor.observations import (
    IDENTITY_TYPES,
    DnsAnswer,
    DnsQuery,
    HttpRequest,
    Observation,
    QuicHello,
    TlsHello,
    canonical_ip,
)

log = logging.getLogger(__name__)

_FlowKey = tuple[str, int, str, int, str]
SNAPLEN = 262_144  # what tcpdump and dumpcap write: no frame is cut


def device_addresses(alert: Alert) -> frozenset[str]:
    """The IP addresses an alert's device used: its ``addresses`` if it lists them, else its id.

    Devices are keyed by their address today; once an alert is keyed by a
    device (a MAC) it lists the addresses it was seen with, and those are
    what packets carry.
    """
    candidates = (*(getattr(alert, "addresses", ()) or ()), alert.device)
    return frozenset(filter(None, map(_address, candidates)))


def _address(text: str) -> str | None:
    """``text`` as a canonical IP address; None if it is a name (or anything else)."""
    try:
        return canonical_ip(text)
    except ValueError:
        return None


def _addresses(values: Iterable[str]) -> set[str]:
    return set(filter(None, map(_address, values)))


def _flow_key(source: str, source_port: int, destination: str, destination_port: int,
              transport: str) -> _FlowKey:
    if (source, source_port) <= (destination, destination_port):
        return (source, source_port, destination, destination_port, transport)
    return (destination, destination_port, source, source_port, transport)


@dataclass(frozen=True, slots=True)
class Record:
    """One packet: from a capture file, or from the lite sniffer's ring in memory."""

    index: int  # position over everything read, in order
    time: float
    linktype: int
    frame: bytes

    @property
    def identity(self) -> int:
        """The same packet read again (or written twice by Suricata) has the same identity."""
        return hash((self.time, self.frame))

    @property
    def stamp(self) -> tuple[int, int]:
        """(seconds, microseconds), as a classic pcap record stores the time."""
        seconds, micro = divmod(round(self.time * 1_000_000), 1_000_000)
        return seconds, micro


Records = Callable[[], Iterable[Record]]
"""Reads the packets from the start, each time it is called (the cut makes two passes)."""


@dataclass(slots=True)
class _Target:
    """What one alert's evidence is made of, learnt in the first pass."""

    alert_id: str
    devices: frozenset[str]
    names: frozenset[str]  # normalized names the indicator covers (its suffix set)
    addresses: set[str]
    since: float  # sightings are looked for from the alert's first sighting - window
    until: float  # to its last + window: the packets beyond are not read twice
    sightings: list[float] = field(default_factory=list)
    flows: set[_FlowKey] = field(default_factory=set)
    # DNS packets naming the indicator, by content (not position: a ring file may be
    # gone by the second pass)
    messages: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class PacketWindow:
    """The packets kept for one alert (classic pcap bytes) and how they were chosen."""

    alert_id: str
    pcap: bytes
    packets: int
    sightings: int
    first_sighting: float | None
    last_sighting: float | None
    window_seconds: float
    truncated: bool
    linktype: int | None
    other_linktypes_skipped: int = 0

    def describe(self) -> dict[str, object]:
        """The JSON-ready account kept in the bundle (evidence.json)."""
        return {"packets": self.packets, "pcap_bytes": len(self.pcap),
                "sightings": self.sightings, "first_sighting": self.first_sighting,
                "last_sighting": self.last_sighting, "window_seconds": self.window_seconds,
                "truncated": self.truncated, "linktype": self.linktype,
                "other_linktypes_skipped": self.other_linktypes_skipped}


def _indicator_names(alert: Alert) -> frozenset[str]:
    names = set()
    for value in (alert.indicator, alert.observed):
        if _address(value) is not None:
            continue
        try:
            names.add(normalize_domain(value))
        except ValueError:
            continue
    return frozenset(names)


def _names_indicator(name: str, names: frozenset[str]) -> bool:
    try:
        return any(suffix in names for suffix in domain_suffixes(normalize_domain(name)))
    except ValueError:
        return False


def read_records(captures: Sequence[Path]) -> Iterator[Record]:
    """Every complete record of ``captures``, in order; damage ends a file, not the reading.

    A file still being written (the ring's newest) ends with a record cut
    short: read up to it, like damage.
    """
    index = 0
    for path in captures:
        try:
            capture = scan_capture(path)
            reader = RawPcapReader(str(capture.path))
        except (CaptureError, OSError, Scapy_Exception) as error:
            log.warning("evidence: %s not read (%s)", path, error)
            continue
        with reader:
            try:
                for frame, linktype, time in islice(pcap_records(reader), capture.packets):
                    yield Record(index, time, linktype, frame)
                    index += 1
            except (Scapy_Exception, EOFError, struct.error, ValueError) as error:
                log.warning("evidence: %s read up to record %d (%s)", path, index, error)


def file_records(captures: Sequence[Path]) -> Records:
    """``read_records`` of these files, as ``cut_windows`` takes them."""
    return lambda: read_records(captures)


def _named(observation: Observation) -> str | None:
    if isinstance(observation, DnsQuery):
        return observation.name
    if isinstance(observation, DnsAnswer):
        return observation.query_name
    if isinstance(observation, TlsHello | QuicHello):
        return observation.sni
    if isinstance(observation, HttpRequest):
        return observation.host
    return None


def _by_device(targets: Sequence[_Target]) -> dict[str, list[_Target]]:
    """Targets by each of their device's addresses: a packet concerns only those of its ends."""
    index: dict[str, list[_Target]] = {}
    for target in targets:
        for address in target.devices:
            index.setdefault(address, []).append(target)
    return index


def _concerned(index: dict[str, list[_Target]], segment: Segment) -> list[_Target]:
    source, destination = index.get(segment.source), index.get(segment.destination)
    if source is None:
        return destination or []
    return source if destination is None else source + destination


def _learn(targets: Sequence[_Target], records: Iterable[Record]) -> None:
    """First pass: sightings, flows naming the indicator, addresses it resolved to."""
    index = _by_device(targets)
    decoder = PacketDecoder()
    for record in records:
        segment = parse_frame(record.linktype, record.frame)
        if segment is None:
            continue
        concerned = [target for target in _concerned(index, segment)
                     if target.since <= record.time <= target.until]
        if not concerned:
            continue
        try:
            observations = decoder.decode_frame(record.linktype, record.frame, record.time)
        except Exception as error:  # noqa: BLE001 - one bad packet never stops evidence
            log.debug("evidence: record %d not decoded (%s)", record.index, error)
            observations = []
        for target in concerned:
            _learn_one(target, record, segment, observations)


def _learn_one(target: _Target, record: Record, segment: Segment,
               observations: Sequence[Observation]) -> None:
    if segment.source in target.devices:
        peer = segment.destination
    elif segment.destination in target.devices:
        peer = segment.source
    else:
        return
    if peer in target.addresses:
        target.sightings.append(record.time)
    for observation in observations:
        if isinstance(observation, IDENTITY_TYPES):  # who a device is, not what it contacted
            continue
        name = _named(observation)
        if name is None or not target.names or not _names_indicator(name, target.names):
            continue
        if observation.endpoints.client not in target.devices:
            continue
        target.sightings.append(observation.time)
        if isinstance(observation, DnsAnswer):
            target.addresses.update(_addresses(r.data for r in observation.records
                                               if r.rrtype in ("A", "AAAA")))
        if isinstance(observation, DnsQuery | DnsAnswer):
            target.messages.add(record.identity)
        else:
            ends = observation.endpoints
            target.flows.add(_flow_key(ends.client, ends.client_port, ends.server,
                                       ends.server_port, ends.transport))


def _keeps(target: _Target, record: Record, segment: Segment) -> bool:
    if segment.source in target.devices:
        peer = segment.destination
    elif segment.destination in target.devices:
        peer = segment.source
    else:
        return False
    if peer in target.addresses or record.identity in target.messages:
        return True
    return _flow_key(segment.source, segment.source_port, segment.destination,
                     segment.destination_port, segment.transport) in target.flows


def _in_windows(time: float, sightings: Sequence[float], window: float) -> bool:
    """Whether ``time`` is within ``window`` of one of the (sorted) ``sightings``."""
    at = bisect.bisect_left(sightings, time - window)
    return at < len(sightings) and sightings[at] <= time + window


class _PcapBuffer:
    """A classic pcap written to memory, one link type, up to ``max_bytes`` of records.

    The link type is the first kept record's; records of another link type
    (a pcapng mixing interfaces) are counted, not kept: a classic pcap is
    what every tool opens.
    """

    def __init__(self, max_bytes: int) -> None:
        self._out = io.BytesIO()
        self._writer: RawPcapWriter | None = None
        self.linktype: int | None = None
        self.max_bytes = max_bytes
        self.packets = 0
        self.truncated = False
        self.skipped = 0
        self._seen: set[int] = set()

    def _open(self, linktype: int) -> RawPcapWriter:
        if self._writer is None:
            self.linktype = linktype
            self._writer = RawPcapWriter(self._out, linktype=linktype, sync=True,
                                         snaplen=SNAPLEN)
            self._writer.write_header(None)
        return self._writer

    def add(self, record: Record) -> None:
        writer = self._open(record.linktype)
        seen = record.identity
        if seen in self._seen:  # Suricata's pcap-log writes its pseudo-packets again
            return
        self._seen.add(seen)
        if record.linktype != self.linktype:
            self.skipped += 1
        elif self._out.tell() + 16 + len(record.frame) > self.max_bytes:
            self.truncated = True
        else:
            seconds, micro = record.stamp
            writer.write_packet(record.frame, sec=seconds, usec=micro)
            self.packets += 1

    def value(self) -> bytes:
        """The pcap; with no packet, a valid empty one (Ethernet)."""
        self._open(LINKTYPE_ETHERNET).flush()
        return self._out.getvalue()


def cut_windows(records: Records, alerts: Sequence[Alert], *, window: float,
                max_bytes: int) -> list[PacketWindow]:
    """The packets of each alert's device with its indicator, among ``records()``.

    An alert whose device has no known address (or whose indicator is never
    seen in these files) gets a window with no packet: its bundle says so.
    """
    targets = [_Target(alert.id, device_addresses(alert), _indicator_names(alert),
                       _addresses((alert.indicator, alert.observed)),
                       since=alert.first_seen - window, until=alert.last_seen + window)
               for alert in alerts]
    live = [target for target in targets if target.devices]
    if live:
        _learn(live, records())
    buffers = {target.alert_id: _PcapBuffer(max_bytes) for target in targets}
    for target in live:
        target.sightings.sort()
    seen = _by_device([target for target in live if target.sightings])
    if seen:
        for record in records():
            segment = parse_frame(record.linktype, record.frame)
            if segment is None:
                continue
            for target in _concerned(seen, segment):
                if _keeps(target, record, segment) and \
                        _in_windows(record.time, target.sightings, window):
                    buffers[target.alert_id].add(record)
    return [_window(target, buffers[target.alert_id], window) for target in targets]


def _window(target: _Target, buffer: _PcapBuffer, window: float) -> PacketWindow:
    sightings = sorted(target.sightings)
    return PacketWindow(alert_id=target.alert_id, pcap=buffer.value(), packets=buffer.packets,
                        sightings=len(sightings),
                        first_sighting=sightings[0] if sightings else None,
                        last_sighting=sightings[-1] if sightings else None,
                        window_seconds=window, truncated=buffer.truncated,
                        linktype=buffer.linktype, other_linktypes_skipped=buffer.skipped)
