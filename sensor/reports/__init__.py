"""Pages a person reads away from the terminal: today, the printable report for one device."""
