"""Evidence of high alerts: the packets of a device with its indicator, encrypted at rest.

``window`` cuts those packets out of capture files, ``bundle`` packs them
with the alert, the feed versions, the clock state and a SHA-256 manifest
and encrypts the bundle with age, ``store`` keeps bundles under a size cap
and the retention period, ``keeper`` ties the three together for
``veilleuse analyze`` and the live sensor. Non-job: sending evidence
anywhere (it never leaves the box by itself; MQTT only announces it).
docs/evidence.md is the user's side.
"""
