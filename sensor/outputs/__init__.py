"""Outputs: where alerts and health go once they are in the alert book."""
