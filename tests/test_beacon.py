"""Beaconing: regular rhythms are found through jitter; human irregularity is not."""

from __future__ import annotations

import random

import pytest

from sensor.detect.beacon import BeaconDetector, BeaconSettings, score_intervals
from sensor.observations import Endpoints, Flow

HOME = ("192.168.0.0/16",)


def _starts(gaps: list[float]) -> list[float]:
    times, now = [], 1_000_000.0
    for gap in gaps:
        now += gap
        times.append(now)
    return times


def _flows(device: str, server: str, port: int, starts: list[float]) -> list[Flow]:
    return [Flow(t, Endpoints(device, server, 40000 + i, port, "tcp"), t + 1)
            for i, t in enumerate(starts)]


def _detect(flows: list[Flow], **settings: float) -> list:
    detector = BeaconDetector(HOME, settings=BeaconSettings(**settings))
    for flow in flows:
        assert list(detector.observe(flow)) == []
    return list(detector.flush())


@pytest.mark.parametrize("seed", range(20))
def test_jittered_timer_is_found(seed: int) -> None:
    rng = random.Random(seed)
    starts = _starts([300 * (1 + rng.uniform(-0.1, 0.1)) for _ in range(10)])
    (finding,) = _detect(_flows("192.168.1.5", "203.0.113.9", 443, starts))
    assert finding.count == 10 and finding.indicator == "203.0.113.9"
    assert 280 <= float(dict(finding.details)["interval_s"]) <= 320


def test_a_missed_beat_does_not_hide_the_rhythm() -> None:
    gaps = [60.0] * 12
    gaps[5] = 120.0
    assert len(_detect(_flows("192.168.1.5", "203.0.113.9", 443, _starts(gaps)))) == 1


@pytest.mark.parametrize("seed", range(20))
def test_random_visits_are_not_a_beacon(seed: int) -> None:
    rng = random.Random(1000 + seed)
    starts = _starts([rng.expovariate(1 / 120) + 1 for _ in range(30)])
    assert _detect(_flows("192.168.1.5", "203.0.113.9", 443, starts)) == []


def test_too_few_connections_fast_rhythms_and_local_or_ntp_servers_are_ignored() -> None:
    regular = _starts([60.0] * 7)
    assert _detect(_flows("192.168.1.5", "203.0.113.9", 443, regular)) == []   # 7 < 8
    fast = _starts([2.0] * 20)
    assert _detect(_flows("192.168.1.5", "203.0.113.9", 443, fast)) == []      # page load
    many = _starts([60.0] * 20)
    assert _detect(_flows("192.168.1.5", "192.168.1.1", 443, many)) == []      # home network
    assert _detect(_flows("192.168.1.5", "203.0.113.9", 123, many)) == []      # NTP


def test_flush_reports_only_new_connections() -> None:
    detector = BeaconDetector(HOME)
    starts = _starts([60.0] * 12)
    flows = _flows("192.168.1.5", "203.0.113.9", 443, starts)
    for flow in flows[:10]:
        detector.observe(flow)
    assert [f.count for f in detector.flush()] == [10]
    assert list(detector.flush()) == []
    for flow in flows[10:]:
        detector.observe(flow)
    assert [f.count for f in detector.flush()] == [2]


def test_score_is_perfect_for_a_metronome_and_none_below_four_starts() -> None:
    assert score_intervals([0, 60, 120, 180]).score == pytest.approx(1.0)
    assert score_intervals([0, 60, 120]) is None


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 4 connections"):
        BeaconSettings(min_connections=2)
