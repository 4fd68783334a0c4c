"""The status screen: golden pages, discretion, button and LED, and the MQTT wiring."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageDraw

from screen.app import ScreenApp, ScreenSettings
from screen.cli import render_picture
from screen.controls import Controls, Gesture, LedPattern
from screen.display import DisplayUnavailable, create_display
from screen.model import HEALTH_STATES, MAX_TEXT, SEVERITY_RANK, ScreenState, apply_message
from screen.pages import Page, View, load_fonts, render
from screen.samples import NETWORK, NOON, RECENT, samples
from sensor.messages import LANGUAGES, load_catalogue, placeholders
from sensor.wire.topics import Topics
from tests.conftest import REPO

DOCS = REPO / "docs" / "screen"
TOPICS = Topics(site="shelter-a", sensor="box1")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", list(samples()))
def test_every_page_matches_its_golden_picture(name: str, language: str) -> None:
    state, view = samples()[name]
    golden = Image.open(DOCS / f"{name}.{language}.png").convert("1")
    rendered = render_picture(state, view, language)
    assert ImageChops.difference(rendered, golden).getbbox() is None, \
        "regenerate with: .venv/bin/veilleuse-screen render-docs docs/screen"


def test_screen_texts_exist_in_both_languages_with_the_same_placeholders() -> None:
    english = load_catalogue("en", "screen.locales").messages
    french = load_catalogue("fr", "screen.locales").messages
    assert english.keys() == french.keys()
    assert all(placeholders(english[k]) == placeholders(french[k]) for k in english)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_health_reason_has_a_text_that_fits_one_line(language: str) -> None:
    """Each reason of the state schema is translated and fits the 124 pixels of a line uncut."""
    schema = json.loads((REPO / "docs" / "schemas" / "state.schema.json").read_text())
    reasons = schema["properties"]["reasons"]["items"]["enum"]
    texts, font = load_catalogue(language, "screen.locales").messages, load_fonts().body
    draw = ImageDraw.Draw(Image.new("1", (128, 64)))
    missing = [r for r in reasons if f"reason.{r}" not in texts]
    assert not missing, f"add reason texts to screen/locales/{language}.yaml: {missing}"
    too_wide = {r: texts[f"reason.{r}"] for r in reasons
                if draw.textlength(texts[f"reason.{r}"], font=font) > 124}
    assert not too_wide, too_wide


class _RecordingDraw:
    """The real ImageDraw, remembering every string it was asked to draw."""

    def __init__(self) -> None:
        self.draw = ImageDraw.Draw(Image.new("1", (128, 64)))
        self.texts: list[str] = []

    def text(self, xy, text, **kwargs) -> None:
        self.texts.append(text)
        self.draw.text(xy, text, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.draw, name)


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_app_or_device_is_shown_until_someone_asks(language: str) -> None:
    texts, fonts = load_catalogue(language, "screen.locales"), load_fonts()
    secrets = [line.app for line in RECENT] + [line.device for line in RECENT]
    for name, (state, view) in samples().items():
        if view.revealed:
            continue
        for page in Page:
            drawn = _RecordingDraw()
            render(drawn, state, dataclasses.replace(view, page=page), texts, fonts, NETWORK)
            shown = " ".join(drawn.texts)
            assert not any(secret in shown for secret in secrets), (name, page, shown)
    drawn = _RecordingDraw()
    state, view = samples()["recent-revealed"]
    render(drawn, state, view, texts, fonts, NETWORK)
    assert "DemoSpy" in " ".join(drawn.texts) and "dev-3f1c0a9b2e41" in " ".join(drawn.texts)


_COMPLETE = {
    "veilleuse.state/1": {"site": "shelter-a", "sensor": "box1", "details": [], "feeds": {}},
    "veilleuse.status/1": {},
    "veilleuse.alert/1": {
        "site": "shelter-a", "sensor": "box1", "device_is_pseudonym": True,
        "indicator": "demospy.example", "observed": "api.demospy.example", "protocol": "dns",
        "protocols": ["dns"], "first_seen": "2026-01-01T11:00:00Z", "count": 1, "details": {},
        "clock_synchronised": True, "title": {"fr": "Titre", "en": "Title"},
        "summary": {"fr": "Résumé", "en": "Summary"}, "advice": {"fr": "Conseil", "en": "Advice"},
        "queued_at": "2026-01-01T11:50:01Z"},
}
FIRST, SECOND = "0123456789abcdef0001", "0123456789abcdef0002"


def _message(schema: str, **fields: object) -> bytes:
    """A payload of the contract: what a test leaves out is filled in, valid."""
    return json.dumps({"schema": schema, **_COMPLETE[schema], **fields}).encode()


def test_messages_fold_into_the_state_and_bad_ones_change_nothing() -> None:
    state = ScreenState(broker_connected=True)
    assert state.shown_health == "starting", "connected, but the sensor has said nothing yet"
    state = apply_message(state, f"{TOPICS.base}/state", _message(
        "veilleuse.state/1", health="alert", time="2026-01-01T12:00:00Z", reasons=[],
        counters={"alerts_high": 1}, feeds={"echap": "abc"}))
    state = apply_message(state, TOPICS.alert, _message(
        "veilleuse.alert/1", id=FIRST, severity="high", kind="domain", app="DemoSpy",
        device="dev-1", last_seen="2026-01-01T11:50:00Z"))
    assert (state.shown_health, state.alert_count, state.highest_severity) == ("alert", 1, "high")
    assert state.alert_since == NOON - 600
    for topic, payload in ((TOPICS.state, b"not json"), (TOPICS.alert, b"[]"),
                           (TOPICS.state, _message("veilleuse.state/1", health="exploded")),
                           (TOPICS.alert, _message("veilleuse.alert/1", id="y"))):
        after = apply_message(state, topic, payload)
        assert dataclasses.replace(after, ignored_messages=0) == state
        assert after.ignored_messages == 1
    offline = apply_message(state, TOPICS.status, _message(
        "veilleuse.status/1", status="offline", time="2026-01-01T12:01:00Z"))
    assert (offline.shown_health, offline.shown_reasons[0]) == ("degraded", "sensor_offline")
    lost = dataclasses.replace(state, broker_connected=False)
    assert lost.shown_reasons == ("screen_broker_unreachable",)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pins() -> MockFactory:
    return MockFactory()


def test_button_gestures_are_told_apart_by_how_long_it_is_held(pins: MockFactory) -> None:
    clock, seen = _Clock(), []
    controls = Controls(17, None, seen.append, pin_factory=pins, clock=clock)
    pin = pins.pin(17)
    for held in (0.3, 3.0, 7.0):
        pin.drive_low()
        clock.now += held
        pin.drive_high()
    assert seen == [Gesture.PRESS, Gesture.HOLD, Gesture.LONG_HOLD]
    controls.close()


def test_led_is_off_steady_or_blinking_by_state(pins: MockFactory) -> None:
    controls = Controls(None, 27, lambda g: None, pin_factory=pins)
    pin = pins.pin(27)
    controls.show(LedPattern.STEADY)
    assert pin.state is True or pin.state == 1
    controls.show(LedPattern.OFF)
    assert not pin.state
    toggled = threading.Event()
    controls.show(LedPattern.BLINK_FAST)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not toggled.is_set():
        if len({bool(s.state) for s in pin.states[-4:]}) == 2:
            toggled.set()
        toggled.wait(0.05)
    assert toggled.is_set(), "the LED should blink"
    controls.close()


def _app(clock: _Clock, display=None) -> ScreenApp:
    return ScreenApp(TOPICS, load_catalogue("en", "screen.locales"), load_fonts(), display,
                     ScreenSettings(reveal_seconds=60, blank_after_seconds=300),
                     network=lambda: NETWORK, clock=clock)


def test_press_walks_pages_and_reveals_details_for_a_while_then_hides_them() -> None:
    clock = _Clock()
    app = _app(clock, create_display("dummy"))
    app.handle("connected", True)
    app.handle("gesture", Gesture.PRESS)
    assert (app.view.page, app.view.revealed) == (Page.RECENT, True)
    clock.now += 61
    app.handle("tick", None)
    assert (app.view.page, app.view.revealed) == (Page.STATUS, False)


def test_all_clear_blanks_after_idle_and_a_touch_only_wakes_it() -> None:
    clock = _Clock()
    display = create_display("dummy")
    app = _app(clock, display)
    app.handle("connected", True)
    app.handle("message", (TOPICS.state, _message(
        "veilleuse.state/1", health="ok", time="2026-01-01T12:00:00Z", reasons=[],
        counters={})))
    clock.now += 299
    app.handle("tick", None)
    assert not app.blanked
    clock.now += 2
    app.handle("tick", None)
    assert app.blanked
    app.handle("gesture", Gesture.PRESS)
    assert not app.blanked and app.view.page is Page.STATUS
    app.handle("message", (TOPICS.state, _message(
        "veilleuse.state/1", health="alert", time="2026-01-01T12:00:00Z", reasons=[],
        counters={"alerts_high": 1})))
    clock.now += 1000
    app.handle("tick", None)
    assert not app.blanked, "an alert is never hidden by the idle blanking"


def test_hold_acknowledges_until_a_new_alert_arrives(pins: MockFactory) -> None:
    clock = _Clock()
    app = _app(clock)
    app.controls = Controls(None, 27, app.gesture, pin_factory=pins)
    app.handle("connected", True)
    alert = {"severity": "high", "kind": "domain", "app": "A", "device": "dev-1",
             "last_seen": "2026-01-01T11:50:00Z"}
    app.handle("message", (TOPICS.alert, _message("veilleuse.alert/1", **alert, id=FIRST)))
    app.handle("message", (TOPICS.state, _message(
        "veilleuse.state/1", health="alert", time="2026-01-01T12:00:00Z", reasons=[],
        counters={"alerts_high": 1})))
    assert app.controls.pattern is LedPattern.BLINK_FAST
    app.handle("gesture", Gesture.HOLD)
    assert app.view.acknowledged and app.controls.pattern is LedPattern.BLINK_SLOW
    app.handle("message", (TOPICS.alert, _message("veilleuse.alert/1", **alert, id=SECOND)))
    assert not app.view.acknowledged and app.controls.pattern is LedPattern.BLINK_FAST
    app.controls.close()


def test_a_missing_display_is_reported_with_what_to_check() -> None:
    with pytest.raises(DisplayUnavailable, match=r"I2C|i2c"):
        create_display("ssd1306", i2c_port=99)


def test_the_screen_follows_a_real_sensor_over_mqtt(tmp_path: Path) -> None:
    from sensor.alerts.book import AlertBook
    from sensor.wire.broker import mqtt_settings
    from sensor.wiring import publisher
    from tests.broker import Core, Mosquitto
    from tests.conftest import require_tool
    from tests.test_mqtt import make_config, queue, synthetic_alerts

    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", require_tool("mosquitto"))
    broker.start()
    config = make_config(tmp_path, broker)
    queue(config, synthetic_alerts(2))
    sender = publisher(config, AlertBook(config.alerts.database))
    sender.start()
    core = Core(broker, topic="veilleuse/+/+/command")
    app = _app(_Clock(), create_display("dummy"))
    settings = mqtt_settings(config)
    app.connect(dataclasses.replace(settings, client_id="screen-test"), display_problem=None)
    stop = threading.Event()
    loop = threading.Thread(target=app.run, args=(stop,))
    loop.start()
    try:
        assert sender.wait_until_delivered(30)
        assert app.wait_for_state(lambda s: s.shown_health == "alert" and
                                  s.counter("alerts_high") == 2, 30)
        app.gesture(Gesture.LONG_HOLD)
        assert core.wait_for(lambda c: c.retained.get("command", {}).get("command") ==
                             "selftest", 30)
    finally:
        stop.set()
        loop.join(10)
        app.close()
        sender.stop()
        core.close()
        broker.stop()


def test_a_front_desk_screen_shows_the_worst_of_several_sensors() -> None:
    def state_of(sensor: str, health: str, reasons: list[str], alerts: int) -> tuple[str, bytes]:
        return (f"veilleuse/shelter-a/{sensor}/state", _message(
            "veilleuse.state/1", health=health, time="2026-01-01T12:00:00Z", reasons=reasons,
            counters={"alerts_high": alerts, "delivered": alerts}, feeds={"echap": "v1"}))

    state = ScreenState(broker_connected=True)
    for topic, payload in (state_of("box1", "ok", [], 0),
                           state_of("box2", "degraded", ["no_traffic"], 0)):
        state = apply_message(state, topic, payload)
    assert (state.shown_health, state.shown_reasons) == ("degraded", ("no_traffic",))
    state = apply_message(state, *state_of("box3", "alert", [], 2))
    assert state.shown_health == "alert"
    assert (state.counter("alerts_high"), state.counter("delivered")) == (2, 2)
    assert [name for name, _ in state.sensors] == ["shelter-a/box1", "shelter-a/box2",
                                                   "shelter-a/box3"]
    site_app = ScreenApp(TOPICS, load_catalogue("en", "screen.locales"), load_fonts(), None,
                         follow_site=True)
    assert [topic for topic, _ in site_app.subscriptions] == [
        "veilleuse/shelter-a/+/state", "veilleuse/shelter-a/+/status",
        "veilleuse/shelter-a/+/alert"]


# -- hostile payloads: the screen bounds, cleans and clamps what it draws ----------------

_FONTS = functools.cache(load_fonts)
_TEXTS = functools.cache(lambda: load_catalogue("en", "screen.locales"))


def _drawn_pages(state: ScreenState) -> list[str]:
    """Every string drawn on every page, details hidden and revealed."""
    drawn = _RecordingDraw()
    for page in Page:
        for revealed in (False, True):
            render(drawn, state, View(page=page, revealed=revealed), _TEXTS(), _FONTS(),
                   NETWORK)
    return drawn.texts


def _assert_drawable(texts: list[str]) -> None:
    for text in texts:
        assert text.isprintable(), repr(text)
        assert len(text) <= MAX_TEXT, repr(text)


def _state_message(**fields: object) -> tuple[str, bytes]:
    return TOPICS.state, _message("veilleuse.state/1", **{
        "health": "alert", "time": "2026-01-01T12:00:00Z", "reasons": [],
        "counters": {"alerts_high": 1}, **fields})


def _alert_message(**fields: object) -> tuple[str, bytes]:
    return TOPICS.alert, _message("veilleuse.alert/1", **{
        "id": FIRST, "severity": "high", "kind": "domain", "app": "DemoSpy", "device": "dev-1",
        "last_seen": "2026-01-01T11:50:00Z", **fields})


@pytest.mark.timeout(30)
def test_a_huge_app_name_with_newlines_is_cut_to_one_line() -> None:
    state = ScreenState(broker_connected=True)
    state = apply_message(state, *_alert_message(app="Spy\nApp" + "x" * 20_000,
                                                 device="dev\r\n1" * 5_000))
    assert len(state.recent[0].app) <= MAX_TEXT and "\n" not in state.recent[0].app
    texts = _drawn_pages(state)
    _assert_drawable(texts)
    assert any(text.startswith("11:50 Spy App") and text.endswith("…") for text in texts)


@pytest.mark.timeout(30)
def test_huge_counters_are_clamped() -> None:
    state = ScreenState(broker_connected=True)
    state = apply_message(state, *_state_message(counters=json.loads(
        '{"alerts_high": ' + "9" * 4000 + ', "pending": 0, "delivered": 0}')))
    for broken in (-5, True):
        after = apply_message(state, *_state_message(counters={"pending": broken}))
        assert after.ignored_messages == 1 and after.counter("alerts_high") > 0, broken
    texts = _drawn_pages(state)
    assert "To review: 9999+" in texts and "Not sent yet: 0" in texts
    assert any(text.startswith("9999+ item") for text in texts)


def test_unknown_health_and_severity_are_shown_as_unknown_never_as_all_clear() -> None:
    state = ScreenState(broker_connected=True)
    state = apply_message(state, *_state_message(health="maintenance"))
    assert (state.shown_health, state.shown_reasons) == ("degraded", ("unknown_health",))
    assert _drawn_pages(state)[:2] == ["CHECK BOX", "See the sensor"]
    state = apply_message(state, *_alert_message(severity={"x": 1}))
    assert state.recent[0].severity == "unknown" and state.ignored_messages == 0
    for bad_time in ("2026-01-01T11:50:00", "yesterday", 1767268200, "9" * 10_000):
        after = apply_message(state, *_alert_message(last_seen=bad_time))
        assert after.ignored_messages == 1, bad_time


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**40, max_value=10**40)
    | st.floats() | st.text(max_size=200),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
_TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda moment: moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))
_TEXT = st.text(max_size=300) | st.sampled_from(["", "\n", "\x00", "\u202e", "A\r\nB"])
_FIELDS = {
    "state": {"schema": st.just("veilleuse.state/1"),
              "health": st.sampled_from(HEALTH_STATES) | _TEXT | _JSON,
              "time": _TIMES | _JSON,
              "reasons": st.lists(st.sampled_from(["no_traffic", "suricata_down"]) | _TEXT,
                                  max_size=20) | _JSON,
              "counters": st.dictionaries(_TEXT, st.integers(min_value=-10**50,
                                                             max_value=10**50) | _JSON,
                                          max_size=20) | _JSON,
              "feeds": st.dictionaries(_TEXT, _TEXT | _JSON, max_size=20) | _JSON},
    "status": {"schema": st.just("veilleuse.status/1"),
               "status": st.sampled_from(["online", "offline"]) | _JSON, "time": _TIMES | _JSON},
    "alert": {"schema": st.just("veilleuse.alert/1"), "id": _TEXT | _JSON,
              "severity": st.sampled_from(list(SEVERITY_RANK)) | _TEXT | _JSON,
              "kind": _TEXT | _JSON, "app": _TEXT | _JSON, "device": _TEXT | _JSON,
              "last_seen": _TIMES | _JSON},
}


@st.composite
def _mqtt_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    leaf = draw(st.sampled_from(list(_FIELDS)))
    sensor = draw(st.sampled_from(["box1", "box2"]) | st.text(max_size=30))
    fields = {key: draw(value) for key, value in _FIELDS[leaf].items()
              if draw(st.integers(0, 9)) > 0}
    payload = json.dumps(fields).encode() if draw(st.integers(0, 9)) > 0 else \
        draw(st.binary(max_size=100))
    return f"veilleuse/shelter-a/{sensor}/{leaf}", payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mqtt_messages(), min_size=1, max_size=8))
def test_any_payload_leaves_every_page_drawable(messages) -> None:
    app = ScreenApp(TOPICS, _TEXTS(), _FONTS(), create_display("dummy"), follow_site=True,
                    network=lambda: NETWORK, clock=_Clock())
    app.handle("connected", True)
    for message in messages:
        app.handle("message", message)  # the path MQTT messages take, drawn each time
    assert app.state.shown_health in HEALTH_STATES
    assert app.state.ignored_messages + len(app.state.sensors) + len(app.state.recent) > 0
    _assert_drawable(_drawn_pages(app.state))
