"""Everything Suricata: its configuration and running it.

Not the job of this package: interpreting EVE records (``sensor.capture.eve``).
"""
