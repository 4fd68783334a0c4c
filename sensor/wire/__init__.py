"""What crosses MQTT: topics, payloads with their JSON Schemas, and the client factory.

The sensor, the screen, ``tail`` and the core all speak through this package
and nothing else of one another, so it imports no pipeline module.
"""
