"""Create the luma display named in the configuration: ssd1306, sh1106 or dummy.

A missing or unplugged display is not fatal: ``create_display`` raises
``DisplayUnavailable`` with what to check, and the screen process runs
headless and says so in its health.
"""

from __future__ import annotations

from typing import Any

from luma.core.device import dummy

from sensor.errors import VeilleuseError

WIDTH, HEIGHT = 128, 64


class DisplayUnavailable(VeilleuseError):
    """The OLED could not be opened."""


def create_display(driver: str, *, i2c_port: int = 1, i2c_address: int = 0x3C,
                   rotation: int = 0, contrast: int = 40) -> Any:
    """The luma device; the dummy is chosen explicitly (tests, docs), never by accident."""
    if driver == "dummy":
        device = dummy(width=WIDTH, height=HEIGHT, mode="1", rotate=rotation)
    else:
        device = _open_oled(driver, i2c_port, i2c_address, rotation)
    device.contrast(contrast)
    return device


def _open_oled(driver: str, port: int, address: int, rotation: int) -> Any:
    from luma.core.error import DeviceAddressError, DeviceNotFoundError, DevicePermissionError
    from luma.core.interface.serial import i2c
    from luma.oled.device import sh1106, ssd1306

    device_class = {"ssd1306": ssd1306, "sh1106": sh1106}.get(driver)
    if device_class is None:
        raise DisplayUnavailable(f"unknown display driver {driver!r}; use ssd1306, sh1106 or "
                                 "dummy")
    try:
        serial = i2c(port=port, address=address)
        return device_class(serial, width=WIDTH, height=HEIGHT, rotate=rotation)
    except DevicePermissionError as error:
        raise DisplayUnavailable(f"{error}; add the veilleuse user to the i2c group") from None
    except DeviceNotFoundError as error:
        raise DisplayUnavailable(f"{error}; enable I2C (raspi-config) and check the cable") \
            from None
    except (DeviceAddressError, OSError) as error:
        raise DisplayUnavailable(f"no display answers at I2C address {address:#04x} on bus "
                                 f"{port} ({error}); check the wiring and screen.i2c_address") \
            from None
