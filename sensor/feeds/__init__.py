"""Indicator feeds: load, validate, match and update them.

Not the job of this package: deciding what a match means (see ``sensor.detect``).
"""
