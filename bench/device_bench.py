"""Device registry memory: bytes per tracked device, and with 5,000 devices.

``python bench/device_bench.py`` (or ``python bench/run.py --devices``)
feeds a ``DeviceRegistry`` what a shelter's phones send as they join (a DHCP
lease with host name and vendor class, a neighbour discovery of a link-local
IPv6 address, an mDNS name; a third of them a second lease later) and
measures, with tracemalloc, the memory the registry holds. The OUI index
netaddr loads on the first maker lookup is measured apart: it is paid once,
whatever the number of devices. Also: µs per identity observation.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import netaddr

from sensor.devices.makers import maker_of, oui_registry
from sensor.devices.registry import DeviceRegistry
from sensor.observations import DhcpLease, NameAnnouncement, NeighbourAdvert

GOAL_BYTES_PER_DEVICE = 2_000
START = 1_767_261_600.0


def joins(count: int, seed: int = 12) -> list:
    """The identity observations of ``count`` phones joining (seeded)."""
    rng = random.Random(seed)
    observations: list = []
    for index in range(count):
        mac = ":".join(f"{octet:02x}" for octet in [rng.choice([0x28, 0x3c, 0xda]),
                                                      *rng.randbytes(5)])
        time_ = START + index
        address = f"10.{index >> 16 & 0xff}.{index >> 8 & 0xff}.{index & 0xff}"
        observations.append(DhcpLease(time_, mac, "ack", address, f"Phone-{index}",
                                      "android-dhcp-13"))
        observations.append(NeighbourAdvert(time_ + 1, mac, f"fe80::{index + 1:x}"))
        observations.append(NameAnnouncement(time_ + 2, f"phone-{index}", address))
        if index % 3 == 0:
            observations.append(DhcpLease(time_ + 60, mac, "ack",
                                          f"172.16.{index >> 8 & 0xff}.{index & 0xff}"))
    return observations


def held(count: int) -> tuple[int, float]:
    """(bytes the registry holds, µs per observation) for ``count`` devices."""
    observations = joins(count)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    registry = DeviceRegistry()
    started = time.process_time()
    for observation in observations:
        registry.observe(observation)
    cpu = time.process_time() - started
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(registry) == count, (len(registry), count)
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown, cpu / len(observations) * 1e6


def oui_index() -> tuple[int, float, int]:
    """(bytes, ms) of the OUI index loaded by the first maker lookup, and the bytes of
    netaddr's own index (what ``netaddr.EUI(...).oui.registration()`` would hold)."""
    started = time.perf_counter()
    oui_registry()
    elapsed = time.perf_counter() - started
    oui_registry.cache_clear()
    tracemalloc.start()
    maker_of("28:39:5e:00:00:01")
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tracemalloc.start()
    netaddr.EUI("28:39:5e:00:00:01").oui.registration()
    netaddr_size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size, elapsed * 1000, netaddr_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 1_000, 5_000])
    args = parser.parse_args(argv)
    index_bytes, index_ms, netaddr_bytes = oui_index()
    print(f"OUI index (first maker lookup, once): {index_bytes / 1e6:.2f} MB, "
          f"{index_ms:.0f} ms; netaddr's own lookup holds {netaddr_bytes / 1e6:.2f} MB "
          f"({index_bytes / netaddr_bytes:.2f}x)")
    for count in args.devices:
        size, micros = held(count)
        per_device = size / count
        print(f"{count:>6} devices: {size / 1e6:6.2f} MB held, {per_device:6.0f} B/device "
              f"(goal <= {GOAL_BYTES_PER_DEVICE}: {per_device / GOAL_BYTES_PER_DEVICE:.2f}x), "
              f"{micros:.1f} µs CPU per identity observation")


if __name__ == "__main__":
    main()
