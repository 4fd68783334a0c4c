"""Capture sources: turn a pcap (or a live interface) into observation records.

Each source yields ``sensor.observations`` records and nothing else. Sources
never detect; they parse, and they count what they could not parse.
"""
