"""Detection: pure functions of observations, feeds and observation time.

Not the job of this package: reading packets (``sensor.capture``), storing or
publishing alerts (``sensor.report`` and later outputs), any network I/O.
"""
