"""The box's button and status LED, through gpiozero (pins injected, MockFactory in tests).

A press shorter than ``hold_seconds`` is a press (next page); up to
``long_hold_seconds`` it is a hold (acknowledge); longer, a long hold
(self-test request). The kind is decided on release, with an injected clock,
so tests drive the pin and the clock instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from gpiozero import LED, Button


class Gesture(StrEnum):
    PRESS = "press"
    HOLD = "hold"
    LONG_HOLD = "long_hold"


class LedPattern(StrEnum):
    """Off while starting, steady when all is well, blinking when someone should look."""

    OFF = "off"
    STEADY = "steady"
    BLINK_FAST = "blink_fast"   # an alert nobody acknowledged yet
    BLINK_SLOW = "blink_slow"   # degraded, or an acknowledged alert


def led_pattern(health: str, acknowledged: bool) -> LedPattern:
    if health == "ok":
        return LedPattern.STEADY
    if health == "alert":
        return LedPattern.BLINK_SLOW if acknowledged else LedPattern.BLINK_FAST
    if health == "degraded":
        return LedPattern.BLINK_SLOW
    return LedPattern.OFF


class Controls:
    """One button and one LED; gestures are handed to ``on_gesture`` (from gpiozero's thread)."""

    def __init__(self, button_pin: int | str | None, led_pin: int | str | None,
                 on_gesture: Callable[[Gesture], None], *, pin_factory: Any = None,
                 hold_seconds: float = 2.0, long_hold_seconds: float = 6.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_gesture = on_gesture
        self._hold, self._long_hold = hold_seconds, long_hold_seconds
        self._clock = clock
        self._pressed_at: float | None = None
        self.pattern = LedPattern.OFF
        self.button = None if button_pin is None else Button(
            button_pin, pull_up=True, bounce_time=0.02, pin_factory=pin_factory)
        self.led = None if led_pin is None else LED(led_pin, pin_factory=pin_factory)
        if self.button is not None:
            self.button.when_pressed = self._pressed
            self.button.when_released = self._released

    def _pressed(self) -> None:
        self._pressed_at = self._clock()

    def _released(self) -> None:
        if self._pressed_at is None:
            return
        held = self._clock() - self._pressed_at
        self._pressed_at = None
        if held >= self._long_hold:
            self._on_gesture(Gesture.LONG_HOLD)
        elif held >= self._hold:
            self._on_gesture(Gesture.HOLD)
        else:
            self._on_gesture(Gesture.PRESS)

    def show(self, pattern: LedPattern) -> None:
        if pattern == self.pattern or self.led is None:
            self.pattern = pattern
            return
        self.pattern = pattern
        if pattern is LedPattern.OFF:
            self.led.off()
        elif pattern is LedPattern.STEADY:
            self.led.on()
        elif pattern is LedPattern.BLINK_FAST:
            self.led.blink(on_time=0.2, off_time=0.2)
        else:
            self.led.blink(on_time=1.0, off_time=1.0)

    def close(self) -> None:
        for device in (self.button, self.led):
            if device is not None:
                device.close()
