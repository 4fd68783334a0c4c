"""Tailing eve.json: nothing skipped, nothing read twice once committed, across restarts."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sensor.capture.eve_tail import EveTailer


def _line(name: str) -> bytes:
    return (b'{"timestamp":"2026-01-01T10:00:00.000000+0000","event_type":"dns",'
            b'"src_ip":"192.168.1.10","src_port":5353,"dest_ip":"192.168.1.1",'
            b'"dest_port":53,"proto":"UDP","dns":{"type":"query","rrname":"'
            + name.encode() + b'","rrtype":"A"}}\n')


def _names(tailer: EveTailer) -> list[str]:
    names = [o.name for o in tailer.read_available()]
    tailer.commit()
    return names


def test_new_lines_only_and_a_half_line_waits_for_its_end(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example") + _line("b.example"))
    tailer = EveTailer(eve, offsets)
    assert _names(tailer) == ["a.example", "b.example"]
    assert _names(tailer) == []
    half = _line("c.example")
    with eve.open("ab") as handle:
        handle.write(half[:40])
    assert _names(tailer) == []
    with eve.open("ab") as handle:
        handle.write(half[40:])
    assert _names(tailer) == ["c.example"]


def test_a_restart_resumes_and_an_uncommitted_batch_is_read_again(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    assert _names(EveTailer(eve, offsets)) == ["a.example"]
    with eve.open("ab") as handle:
        handle.write(_line("b.example"))
    crashed = EveTailer(eve, offsets)
    assert [o.name for o in crashed.read_available()] == ["b.example"]  # no commit: a crash
    assert _names(EveTailer(eve, offsets)) == ["b.example"]
    assert _names(EveTailer(eve, offsets)) == []


def test_a_truncated_or_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example") + _line("b.example"))
    tailer = EveTailer(eve, offsets)
    assert len(_names(tailer)) == 2
    eve.write_bytes(_line("c.example"))  # truncated and rewritten: smaller than the offset
    assert _names(tailer) == ["c.example"]
    replacement = tmp_path / "eve.new"
    replacement.write_bytes(_line("d.example") + _line("e.example"))
    os.replace(replacement, eve)  # rotated: another inode
    assert _names(tailer) == ["d.example", "e.example"]


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    tailer = EveTailer(eve, offsets)
    assert _names(tailer) == ["a.example"]
    with eve.open("ab") as handle:  # written just before the rename
        handle.write(_line("b.example"))
    os.replace(eve, tmp_path / "eve.json.1")
    with (tmp_path / "eve.json.1").open("ab") as handle:  # Suricata not reopened yet
        handle.write(_line("c.example"))
    assert _names(tailer) == ["b.example", "c.example"]
    eve.write_bytes(_line("d.example"))  # reopened: a new file
    assert _names(tailer) == ["d.example"]
    assert _names(tailer) == []


def test_a_restart_in_the_middle_of_a_rotation_finishes_the_old_file(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    assert _names(EveTailer(eve, offsets)) == ["a.example"]
    with eve.open("ab") as handle:
        handle.write(_line("b.example"))
    os.replace(eve, tmp_path / "eve.json.1")
    eve.write_bytes(_line("c.example"))
    restarted = EveTailer(eve, offsets)
    assert _names(restarted) == ["b.example"]
    assert _names(restarted) == ["c.example"]


def test_the_daemon_rotates_only_when_nothing_can_be_lost(tmp_path: Path) -> None:
    from sensor.config import Config
    from sensor.wiring import live_capture

    capture = live_capture(Config.model_validate(
        {"daemon": {"runtime_directory": str(tmp_path), "max_eve_megabytes": 1}}), "suricata")
    eve = capture.supervisor.eve_path
    eve.write_bytes(_line("a.example") * 5000)          # ~1.1 MB
    capture.rotate_if_needed()
    assert eve.exists(), "the tailer has not opened the file yet: rotating could lose it"
    names = [o.name for o in capture.records()]
    capture.position.commit()
    capture.rotate_if_needed()
    assert not eve.exists() and (tmp_path / "suricata" / "eve.json.1").exists()
    assert [name for name, _, _ in capture.supervisor._requests] == ["log files reopened"]
    eve.write_bytes(_line("b.example") * 5000)          # Suricata's new file, big already
    capture.rotate_if_needed()
    assert len(capture.supervisor._requests) == 1, "the old file is not finished: no rotation"
    while batch := capture.records():
        names += [o.name for o in batch]
        capture.position.commit()
    assert names == ["a.example"] * 5000 + ["b.example"] * 5000
    capture.rotate_if_needed()
    assert len(capture.supervisor._requests) == 2, "on the new file again: rotation allowed"


def test_a_full_disk_keeps_reading_and_saves_the_position_when_space_returns(
        tmp_path: Path, small_disk) -> None:
    eve, offsets = tmp_path / "eve.json", small_disk.path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    tailer = EveTailer(eve, offsets)
    assert _names(tailer) == ["a.example"] and not tailer.disk_full
    small_disk.fill()
    with eve.open("ab") as handle:
        handle.write(_line("b.example"))
    assert _names(tailer) == ["b.example"]  # commit did not raise
    assert tailer.disk_full
    assert EveTailer(eve, offsets).position.offset == len(_line("a.example"))
    small_disk.free()
    tailer.commit()
    assert not tailer.disk_full
    assert EveTailer(eve, offsets).position.offset == 2 * len(_line("a.example"))


def _waiting(tailer: EveTailer, timeout: float) -> threading.Thread:
    waiter = threading.Thread(target=tailer.wait_for_lines, args=(timeout,), daemon=True)
    waiter.start()
    return waiter


def test_a_waiting_tailer_wakes_on_a_new_line_and_sleeps_without_one(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    tailer = EveTailer(eve, offsets)
    waiter = _waiting(tailer, 60)
    waiter.join(10)
    assert not waiter.is_alive(), "unread lines: no wait at all"
    assert _names(tailer) == ["a.example"]
    waiter = _waiting(tailer, 60)
    waiter.join(0.2)
    assert waiter.is_alive(), "nothing new: it sleeps (saving the offset did not wake it)"
    with eve.open("ab") as handle:
        handle.write(_line("b.example"))
    waiter.join(10)
    assert not waiter.is_alive(), "woken by the new line, long before its 60 s"
    assert _names(tailer) == ["b.example"]
    half = _line("c.example")
    with eve.open("ab") as handle:
        handle.write(half[:40])
    assert _names(tailer) == []
    waiter = _waiting(tailer, 60)
    waiter.join(0.2)
    assert waiter.is_alive(), "a half line read already does not keep it awake"
    with eve.open("ab") as handle:
        handle.write(half[40:])
    waiter.join(10)
    assert not waiter.is_alive()
    assert _names(tailer) == ["c.example"]
    tailer.close()


def test_a_waiting_tailer_wakes_on_rotation(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    tailer = EveTailer(eve, offsets)
    assert _names(tailer) == ["a.example"]
    os.replace(eve, tmp_path / "eve.json.1")
    waiter = _waiting(tailer, 60)
    replacement = tmp_path / "new"
    replacement.write_bytes(_line("b.example"))
    os.replace(replacement, eve)  # Suricata reopened its logs
    waiter.join(10)
    assert not waiter.is_alive()
    assert _names(tailer) == ["b.example"]
    tailer.close()


def _after_a_crash(eve: Path, offsets: Path) -> list[str]:
    """What a restarted tailer reads first (without saving anything)."""
    return [o.name for o in EveTailer(eve, offsets).read_available()]


def test_a_batched_save_lags_but_a_crash_never_skips(tmp_path: Path) -> None:
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    now = [0.0]
    eve.write_bytes(_line("a.example"))
    tailer = EveTailer(eve, offsets, save_every=2.0, clock=lambda: now[0])
    assert _names(tailer) == ["a.example"]  # the first commit saves: it was due
    with eve.open("ab") as handle:
        handle.write(_line("b.example"))
    now[0] = 1.0
    assert _names(tailer) == ["b.example"]  # committed, not saved yet
    assert _after_a_crash(eve, offsets) == ["b.example"], "a crash now reads it again"
    now[0] = 2.0
    tailer.commit()  # due: saved
    assert _after_a_crash(eve, offsets) == []
    with eve.open("ab") as handle:
        handle.write(_line("c.example"))
    assert _names(tailer) == ["c.example"]
    tailer.save()  # on stop
    assert _after_a_crash(eve, offsets) == []


def test_reading_goes_on_past_an_uncommitted_batch_and_a_crash_replays_it(
        tmp_path: Path) -> None:
    """The daemon holds the position while sightings wait to be written: it must not read
    the same records again meanwhile (each would be counted again)."""
    eve, offsets = tmp_path / "eve.json", tmp_path / "eve.offset"
    eve.write_bytes(_line("a.example"))
    tailer = EveTailer(eve, offsets)
    assert _names(tailer) == ["a.example"]
    with eve.open("ab") as handle:
        handle.write(_line("b.example"))
    assert [o.name for o in tailer.read_available()] == ["b.example"]  # not committed
    with eve.open("ab") as handle:
        handle.write(_line("c.example"))
    assert [o.name for o in tailer.read_available()] == ["c.example"], "b is not read twice"
    os.replace(eve, tmp_path / "eve.json.1")
    eve.write_bytes(_line("d.example"))  # rotated, with b and c still not committed
    assert [o.name for o in tailer.read_available()] == ["d.example"]
    assert _after_a_crash(eve, offsets) == ["b.example", "c.example"], "nothing skipped"
    tailer.commit()
    assert _after_a_crash(eve, offsets) == []


def test_records_no_detector_wants_are_not_built(tmp_path: Path) -> None:
    """``wanted`` (the engine's observed types) drops other records; the wanted ones stay."""
    from sensor.config import Config
    from sensor.detect.beacon import BeaconDetector
    from sensor.detect.engine import DetectionEngine
    from sensor.feeds.matcher import IndicatorMatcher
    from sensor.observations import IDENTITY_TYPES, DnsQuery, Flow
    from sensor.wiring import build_engine

    flow = (b'{"event_type":"flow","src_ip":"192.168.1.10","src_port":40000,'
            b'"dest_ip":"203.0.113.5","dest_port":443,"proto":"TCP","flow":{'
            b'"start":"2026-01-01T10:00:00.000000+0000","end":"2026-01-01T10:00:01.000000+0000",'
            b'"pkts_toserver":3,"pkts_toclient":2,"bytes_toserver":300,"bytes_toclient":200}}\n')
    eve = tmp_path / "eve.json"
    eve.write_bytes(_line("a.example") + flow)
    everything = build_engine(Config(), IndicatorMatcher([])).observed_types
    assert everything is not None and {DnsQuery, Flow} <= everything
    assert set(IDENTITY_TYPES) <= everything, "the device registry learns from them"
    flows_only = DetectionEngine([BeaconDetector(["192.168.1.0/24"])]).observed_types
    assert flows_only == {Flow}
    all_kinds = [type(o) for o in EveTailer(eve, tmp_path / "a", wanted=everything)
                 .read_available()]
    assert all_kinds == [type(o) for o in EveTailer(eve, tmp_path / "b").read_available()] \
        == [DnsQuery, Flow]
    tailer = EveTailer(eve, tmp_path / "c", wanted=flows_only)
    assert [type(o) for o in tailer.read_available()] == [Flow]
    assert tailer.stats.records == 2 and tailer.stats.observations == 1
