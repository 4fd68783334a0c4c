"""``veilleuse-core``: ingest, status, check-config.

Errors a person can act on end as ``veilleuse-core: error: ...`` and exit 1
(``DEBUG=1`` re-raises them with the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from core.config import DEFAULT_CONFIG_PATH, CoreConfig, load_core_config
from core.errors import CoreError
from core.ingest import Ingest
from core.notify import Notifier
from core.status import format_status, sensor_lines
from core.store import CoreStore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veilleuse-core", description="The helpline's side "
                                     "of Veilleuse: store sensors' alerts, watch the sensors.")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_PATH),
                        help=f"the core's YAML file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="subscribe and store until stopped")
    ingest.add_argument("--client-id", help="this process's MQTT client id (each ingest "
                        "process needs its own; default: mqtt.client_id)")
    commands.add_parser("status", help="sensors and alert counts; exit 1 if a sensor is "
                        "silent or degraded")
    commands.add_parser("check-config", help="validate the configuration; exit 0 or 1")
    return parser


def run_ingest(config: CoreConfig) -> int:
    """Run until SIGTERM or SIGINT, then store what arrived and disconnect."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    notifier = Notifier(config.notify, config.store.database)
    CoreStore(config.store.database).close()  # fail now, with the path, if it cannot open
    ingest = Ingest(config, notifier)
    notifier.start()
    ingest.start()
    logging.getLogger(__name__).info("ingest started (client %s, group %s, database %s)",
                                     config.mqtt.client_id, config.mqtt.share_group,
                                     config.store.database)
    stop.wait()
    ingest.stop()
    notifier.stop()
    return 0


def run_status(config: CoreConfig) -> int:
    store = CoreStore(config.store.database)
    try:
        lines = sensor_lines(store, time.time(), config.sensors.silent_after_seconds)
        print(format_status(lines, store.severity_counts()))
    finally:
        store.close()
    return 1 if any(line.condition.is_bad for line in lines) else 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_core_config(arguments.config)
        if getattr(arguments, "client_id", None):
            config = config.model_copy(update={"mqtt": config.mqtt.model_copy(
                update={"client_id": arguments.client_id})})
        if arguments.command == "ingest":
            return run_ingest(config)
        if arguments.command == "status":
            return run_status(config)
        print(f"{arguments.config}: valid")
        return 0
    except CoreError as error:
        if os.environ.get("DEBUG"):
            raise
        print(f"veilleuse-core: error: {error}", file=sys.stderr)
        return 1
