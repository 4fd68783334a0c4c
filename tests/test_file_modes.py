"""Files the sensor writes are private (0600) whatever the umask: they hold raw addresses."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.alerts.book import AlertBook
from sensor.files import replace_file
from tests.conftest import sighting


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A root shell's usual umask, which leaves new files world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _record(book: AlertBook, alert_id: str) -> None:
    book.record(sighting(alert_id), payload=lambda merged: "{}", now=1.0)


def test_the_book_and_its_wal_and_shm_are_private(tmp_path, loose_umask) -> None:
    path = tmp_path / "alerts.sqlite"
    book = AlertBook(path)
    _record(book, "a")
    files = [path, path.with_name("alerts.sqlite-wal"), path.with_name("alerts.sqlite-shm")]
    assert {file.name: _mode(file) for file in files} == {file.name: 0o600 for file in files}
    book.close()


def test_a_world_readable_book_from_before_is_tightened(tmp_path, loose_umask) -> None:
    path = tmp_path / "alerts.sqlite"
    book = AlertBook(path)
    _record(book, "a")
    book.close()
    for file in tmp_path.iterdir():
        file.chmod(0o644)
    AlertBook(path).close()
    assert {file.name: _mode(file) for file in tmp_path.iterdir()} == \
        {file.name: 0o600 for file in tmp_path.iterdir()}


@pytest.mark.parametrize("durable", [True, False])
def test_replaced_files_are_private_or_have_the_mode_asked(tmp_path, loose_umask,
                                                           durable) -> None:
    target = tmp_path / "health.json"
    replace_file(target, "{}", durable=durable)
    assert _mode(target) == 0o600
    replace_file(target, "{}", durable=durable, mode=0o640)
    assert _mode(target) == 0o640 and target.read_text() == "{}"
