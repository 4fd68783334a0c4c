"""Veilleuse sensor: from mirrored traffic to explained stalkerware alerts.

Data flows one way: ``capture`` (packets or EVE records to observations),
``detect`` (observations plus feeds to alerts), ``report`` (alerts to people).
Importing any module has no side effects.
"""

__version__ = "0.1.0"
