"""The live sensor daemon: capture, detection, the alert book and publishing, supervised."""
