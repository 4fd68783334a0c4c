"""Property tests: no input, however hostile, crashes the EVE parser or a feed loader.

Each may only answer with its documented error (EveRecordError, FeedError),
never with another exception: in the daemon those are counted and skipped,
anything else would be a crash of the record loop or of a feed update.
"""

from __future__ import annotations

import contextlib
import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.capture.eve import EveRecordError, parse_eve_line
from sensor.errors import FeedError
from sensor.feeds.formats import load_feed

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
EVE_KEYS = ["event_type", "timestamp", "src_ip", "dest_ip", "src_port", "dest_port", "proto",
            "dns", "tls", "http", "quic", "flow", "rrname", "rdata", "answers", "sni",
            "hostname", "queries", "type"]
eve_records = st.fixed_dictionaries(
    {"event_type": st.sampled_from(["dns", "tls", "http", "quic", "flow", "alert", "stats",
                                    "x"])},
    optional={key: values for key in EVE_KEYS[1:]})


@SETTINGS
@given(eve_records)
def test_an_eve_record_of_any_shape_gives_observations_or_a_record_error(record) -> None:
    try:
        observations = parse_eve_line(json.dumps(record))
    except EveRecordError:
        return
    assert isinstance(observations, list)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_an_eve_line_give_observations_or_a_record_error(line) -> None:
    with contextlib.suppress(EveRecordError):
        parse_eve_line(line)


ECHAP_KEYS = ["name", "names", "type", "packages", "certificates", "websites", "distribution",
              "c2", "ips", "domains", "sha256"]
echap_documents = st.lists(
    st.fixed_dictionaries({}, optional={key: values for key in ECHAP_KEYS}), max_size=4)


@SETTINGS
@given(echap_documents)
def test_an_echap_feed_of_any_shape_loads_or_fails_with_a_feed_error(document) -> None:
    try:
        feed = load_feed(yaml.safe_dump(document).encode(), "fuzzed", "echap")
    except FeedError:
        return
    assert all(indicator.value for indicator in feed.indicators)


@SETTINGS
@given(values, st.sampled_from(["stix2", "misp"]))
def test_a_stix_or_misp_feed_of_any_shape_loads_or_fails_with_a_feed_error(document,
                                                                          feed_format) -> None:
    if feed_format == "stix2":
        document = {"type": "bundle", "id": "bundle--1", "objects": [document, document]}
    with contextlib.suppress(FeedError):
        load_feed(json.dumps(document).encode(), "fuzzed", feed_format)
