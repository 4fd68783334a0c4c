"""Veilleuse core: the helpline's side of the MQTT interface.

Data flows one way: ``ingest`` (MQTT messages, validated by ``payloads``,
written by ``store`` before they are acknowledged), then ``siem`` (JSON lines
for a SIEM) and ``notify`` (Apprise). ``conditions`` decides whether a sensor
is silent or degraded. The only contract with the sensor is the wire: the
JSON Schemas in ``core/schemas`` (copies of docs/schemas, kept identical by a
test) and the topic names. Importing any module has no side effects.
"""

__version__ = "0.1.0"
