"""Which phone is it: devices learnt from what crosses the mirror port (MAC, names, addresses)."""
