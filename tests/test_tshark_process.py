"""The tshark source never leaves tshark running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sensor.capture.tshark import TsharkSource
from tests.scenarios import build_everything


def _commands() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
            table[int(entry.name)] = (parent, command)
    return table


def _leftovers(capture: Path) -> list[str]:
    """Our worker processes, and any process anywhere still reading ``capture``.

    multiprocessing's resource tracker is a child by design and is not counted.
    """
    table = _commands()
    mine, stack = set(), [os.getpid()]
    while stack:
        parent = stack.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in mine:
                mine.add(pid)
                stack.append(pid)
    return [command for pid, (_, command) in table.items()
            if (pid in mine and "spawn_main" in command) or str(capture) in command]


def test_stopping_early_closes_tshark(tmp_path, tshark) -> None:
    capture, _ = build_everything(tmp_path / "c.pcap")
    records = TsharkSource().read(capture)
    assert next(records) is not None
    assert _leftovers(capture), "tshark should be running while we read"
    records.close()
    assert _leftovers(capture) == []


def test_reading_to_the_end_leaves_nothing_behind(tmp_path, tshark) -> None:
    capture, _ = build_everything(tmp_path / "c.pcap")
    assert len(list(TsharkSource().read(capture))) > 50
    assert _leftovers(capture) == []


def test_a_tshark_killed_mid_run_is_an_error_with_the_partial_results(tmp_path, tshark) -> None:
    import signal

    capture, _ = build_everything(tmp_path / "c.pcap")
    source = TsharkSource()
    records = source.read(capture)
    first = [next(records)]
    # Ours only: other tshark processes may run on the machine at the same time.
    [pid] = [pid for pid, (_, command) in _commands().items()
             if command.startswith(tshark) and f" -r {capture} " in command]
    os.kill(pid, signal.SIGKILL)
    rest = list(records)  # no exception: what was read is kept ...
    assert first and source.stats.observations == len(first) + len(rest)
    assert source.stats.damaged == "tshark failed (killed by signal 9)"  # ... and reported
    assert _leftovers(capture) == []


def test_tshark_is_found_through_pyshark_and_must_be_recent(tmp_path) -> None:
    from sensor.capture.tshark import locate_tshark
    from sensor.errors import CaptureError

    assert Path(locate_tshark()).name == "tshark"
    old = tmp_path / "tshark"
    old.write_text("#!/bin/sh\necho 'TShark (Wireshark) 2.6.20 (Git v2.6.20)'\n")
    old.chmod(0o755)
    with pytest.raises(CaptureError, match=r"tshark 2\.6\.20; Veilleuse needs 3\.0 or newer"):
        locate_tshark(str(old))
