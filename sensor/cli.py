"""The ``veilleuse`` command: one entry point for analysis, feeds and configuration.

Errors a person can fix print ``veilleuse: error: ...`` and exit 1 (2 for a
bad configuration or usage); set DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sensor import __version__
from sensor.analysis import AnalysisResult, analyze_capture
from sensor.capture import scan_capture
from sensor.command import run_command
from sensor.config import DEFAULT_CONFIG_PATH, Config, load_config
from sensor.config_docs import render_config_docs
from sensor.feeds.model import describe_feeds, feed_versions
from sensor.feeds.update import UpdateStatus, update_feeds
from sensor.files import replace_file
from sensor.messages import LANGUAGES, language_from_environment, load_catalogue
from sensor.mirror import NETWORKD_DIRECTORY, NETWORKMANAGER_DIRECTORY
from sensor.report import write_jsonl, write_text
from sensor.wiring import (
    LIVE_SOURCE_NAMES,
    SOURCE_NAMES,
    alert_queue,
    build_engine,
    build_matcher,
    evidence_keeper,
    feed_store,
    load_feeds,
    open_alert_book,
    open_source,
    publisher,
    sensor_daemon,
)

if TYPE_CHECKING:
    from sensor.alerts.book import AlertBook
    from sensor.evidence.keeper import EvidenceKeeper
    from sensor.feeds.model import Feed

log = logging.getLogger("veilleuse")

RULES_FILE_MODE = 0o644  # read by another program's account (the operator's own Suricata)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veilleuse", description="Veilleuse: spot stalkerware traffic on a shelter network.")
    parser.add_argument("--version", action="version", version=f"veilleuse {__version__}")
    parser.add_argument("--config", type=Path, help=f"configuration file "
                        f"(default: {DEFAULT_CONFIG_PATH} if it exists, else built-in defaults)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser("analyze", help="analyse a capture file (pcap or pcapng)")
    analyze.add_argument("capture", type=Path, help="the capture file")
    _add_analysis_options(analyze)
    analyze.add_argument("--feed", type=Path, action="append", default=[], metavar="FILE",
                         help="indicator file in Echap YAML format (repeatable); default: the "
                         "feeds installed by `veilleuse feeds update`")
    analyze.add_argument("--mqtt", metavar="URL", help="also store the alerts in the alert "
                         "book and publish them to this broker (mqtt://host:port)")
    analyze.add_argument("--mqtt-timeout", type=float, default=30.0, metavar="SECONDS",
                         help="how long to wait for the broker's acknowledgements (default 30)")

    run = commands.add_parser("run", help="the live sensor on the mirror interface "
                              "(under systemd: veilleuse.service)")
    run.add_argument("--source", choices=LIVE_SOURCE_NAMES, default="suricata",
                     help="suricata (default) or the scapy lite sniffer")
    run.add_argument("--interface", help="override network.interface")
    run.add_argument("--feed", type=Path, action="append", default=[], metavar="FILE",
                     help="indicator file (repeatable); default: the installed feeds")
    commands.add_parser("status", help="the live sensor's health, for SSH maintenance "
                        "(exit 0 ok/alert and capturing, 1 degraded or not capturing, "
                        "3 not running)")
    selftest = commands.add_parser("selftest", help="send a harmless probe through the running "
                                   "sensor and check it comes out as an alert, delivered")
    selftest.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")

    mirror = commands.add_parser("mirror", help="the mirror interface (run as root, before "
                                 "the network comes up: veilleuse-mirror.service)")
    mirror_commands = mirror.add_subparsers(dest="mirror_command", required=True,
                                            metavar="ACTION")
    apply = mirror_commands.add_parser(
        "apply", help="keep network.interface passive: networkd and NetworkManager drop-ins, "
        "link settings, nftables table inet veilleuse")
    apply.add_argument("--dry-run", action="store_true", help="print what would be done")
    apply.add_argument("--interface", help="override network.interface")
    apply.add_argument("--networkd-dir", type=Path, default=NETWORKD_DIRECTORY, metavar="DIR",
                       help=f"where the .network file goes (default {NETWORKD_DIRECTORY})")
    apply.add_argument("--networkmanager-dir", type=Path, default=NETWORKMANAGER_DIRECTORY,
                       metavar="DIR", help="where the NetworkManager drop-in goes (default "
                       f"{NETWORKMANAGER_DIRECTORY})")

    access = commands.add_parser("core-access", help="let the sensor reach the core's "
                                 "addresses and nothing else (root: veilleuse-core-access)")
    access_commands = access.add_subparsers(dest="access_command", required=True,
                                            metavar="ACTION")
    access_apply = access_commands.add_parser(
        "apply", help="resolve mqtt.url's host, write the sensor's hosts file, allow those "
        "addresses to veilleuse.service")
    access_apply.add_argument("--dry-run", action="store_true", help="print what would be done")

    rules = commands.add_parser("rules", help="compile the feeds into Suricata rules")
    rules.add_argument("--feed", type=Path, action="append", default=[], metavar="FILE",
                       help="indicator file (repeatable); default: the installed feeds")
    rules.add_argument("--output", type=Path, help="write here instead of stdout")

    publish = commands.add_parser("publish", help="publish the alerts waiting in the alert "
                                  "book, then exit")
    publish.add_argument("--mqtt", metavar="URL", help="broker (default: the config's)")
    publish.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")

    tail = commands.add_parser("tail", help="follow the alerts, state and status on a broker")
    tail.add_argument("--mqtt", metavar="URL", help="broker (default: the config's)")
    tail.add_argument("--json", action="store_true", help="print the raw JSON payloads")
    tail.add_argument("--lang", choices=LANGUAGES, help="language of the lines")
    tail.add_argument("--count", type=int, help="exit after this many messages")

    evidence = commands.add_parser("evidence", help="the encrypted evidence kept for high "
                                   "alerts (docs/evidence.md)")
    evidence_commands = evidence.add_subparsers(dest="evidence_command", required=True,
                                                metavar="ACTION")
    evidence_commands.add_parser("list", help="the bundles kept: alert id, size, SHA-256")
    export = evidence_commands.add_parser("export", help="copy one alert's encrypted bundle "
                                          "(for the helpline: age -d -i key.txt)")
    export.add_argument("alert_id", metavar="ALERT_ID", help="the alert's id, on the box or "
                        "as published over MQTT")
    export.add_argument("--output", type=Path, metavar="FILE",
                        help="where to write it (default: ./<alert id>.tar.age)")

    report = commands.add_parser("report", help="a printable page (HTML) of what was seen of "
                                 "one device, from the alert book or from a capture")
    report.add_argument("--device", required=True, metavar="DEVICE",
                        help="the device: its IP address as the alerts show it, or its "
                        "pseudonym (dev-..., from the screen or the helpline's alerts)")
    report.add_argument("--capture", type=Path, metavar="FILE",
                        help="analyse this capture instead of reading the alert book")
    report.add_argument("--source", choices=SOURCE_NAMES, default="suricata",
                        help="with --capture: what reads the packets (default: suricata)")
    report.add_argument("--feed", type=Path, action="append", default=[], metavar="FILE",
                        help="with --capture: indicator file (repeatable); default: the "
                        "installed feeds")
    report.add_argument("--lang", "--language", dest="lang", choices=LANGUAGES,
                        help="language of the page (default: the config's, else the locale)")
    report.add_argument("--output", type=Path, metavar="FILE", help="write the page here "
                        "(readable by you alone) instead of stdout")

    demo = commands.add_parser("demo", help="build a demo capture and analyse it with the "
                               "demo feed (no network, no mirror port needed)")
    _add_analysis_options(demo)
    demo.add_argument("--keep", type=Path, metavar="PCAP",
                      help="also save the demo capture to this file")

    feeds = commands.add_parser("feeds", help="indicator feeds")
    feed_commands = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    feed_commands.add_parser("update", help="download, validate and install the feeds")
    feed_commands.add_parser("status", help="show the installed feeds, their age and what "
                             "validation skipped in them")

    check = commands.add_parser("check-config", help="validate a configuration file "
                                "(exit 0 if valid, 2 if not)")
    check.add_argument("path", type=Path, nargs="?", help="file to check (default: --config "
                       f"or {DEFAULT_CONFIG_PATH})")
    commands.add_parser("config-docs", help="print the configuration reference (Markdown)")

    first_boot = commands.add_parser(
        "first-boot", help="apply the veilleuse/ folder of the boot partition once (root: "
        "veilleuse-firstboot.service); see docs/hardware.md")
    first_boot.add_argument("--boot-dir", type=Path, default=Path("/boot/firmware/veilleuse"),
                            metavar="DIR", help="the folder (default /boot/firmware/veilleuse)")
    first_boot.add_argument("--etc-dir", type=Path, default=Path("/etc/veilleuse"),
                            metavar="DIR", help="where it is installed (default /etc/veilleuse)")
    first_boot.add_argument("--state-dir", type=Path, default=Path("/var/lib/veilleuse"),
                            metavar="DIR", help="where the report the health reads goes "
                            "(default /var/lib/veilleuse)")
    first_boot.add_argument("--sys-net-dir", type=Path, default=Path("/sys/class/net"),
                            metavar="DIR", help=argparse.SUPPRESS)
    return parser


def _add_analysis_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--source", choices=SOURCE_NAMES, default="suricata",
                         help="what reads the packets (default: suricata)")
    command.add_argument("--format", choices=("text", "jsonl"), default="text",
                         help="text: a readable summary; jsonl: one alert per line")
    command.add_argument("--lang", choices=LANGUAGES,
                         help="language of the text (default: the config's, else the locale)")
    command.add_argument("--output", type=Path, help="write the report here instead of stdout")


def _config(args: argparse.Namespace) -> tuple[Config, bool]:
    if args.config is not None:
        return load_config(args.config), True
    if DEFAULT_CONFIG_PATH.exists():
        return load_config(DEFAULT_CONFIG_PATH), True
    return Config(), False


def _report(args: argparse.Namespace, config: Config, from_file: bool, capture: Path,
            feeds_text: str, result: AnalysisResult) -> None:
    language = args.lang or (config.language if from_file else language_from_environment())
    stream = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        if args.format == "jsonl":
            write_jsonl(result.alerts, stream)
        else:
            write_text(list(result.alerts), stream, load_catalogue(language),
                       capture=str(capture), source=result.source,
                       observations=result.observations, feeds=feeds_text,
                       skipped=result.skipped, detector_errors=result.detector_errors)
    finally:
        if args.output:
            stream.close()


def _analysis(config: Config, capture: Path, source: str,
              feed_files: Sequence[Path]) -> tuple[list[Feed], AnalysisResult]:
    feeds = load_feeds(config, feed_files)
    engine = build_engine(config, build_matcher(feeds, config))
    return feeds, analyze_capture(capture, open_source(source, config), engine)


def _analyze(args: argparse.Namespace, capture: Path, feed_files: Sequence[Path]) -> int:
    config, from_file = _config(args)
    feeds, result = _analysis(config, capture, args.source, feed_files)
    _report(args, config, from_file, capture, describe_feeds(feeds), result)
    status = 0
    keeper = _keep_evidence(config, capture, result, feed_versions(feeds))
    if getattr(args, "mqtt", None):
        book = open_alert_book(config)
        try:
            queue = alert_queue(config, book)
            queue.evidence_of = keeper.announcement if keeper else None
            queue.add_all(result.alerts)
            status = _deliver(config, book, args.mqtt, args.mqtt_timeout, feed_versions(feeds))
        finally:
            book.close()
    if not result.damaged and scan_capture(capture).packets == 0:
        print(f"veilleuse: warning: {capture}: the capture holds no packet; nothing was "
              "analysed (was the capture taken on the right interface?)", file=sys.stderr)
    if result.damaged:
        print(f"veilleuse: error: {capture}: {result.damaged}; the report above covers only "
              f"what was read before the damage ({result.records} {result.source} records)",
              file=sys.stderr)
        return 1
    return status


def _keep_evidence(config: Config, capture: Path, result: AnalysisResult,
                   feeds: dict[str, str]) -> EvidenceKeeper | None:
    """Encrypted evidence of the high alerts, cut from ``capture``, if a helpline key is set."""
    if not config.evidence.recipients:
        log.info("evidence: no helpline key (evidence.recipients); no packets kept")
        return None
    from sensor.evidence.window import file_records

    keeper = evidence_keeper(config)
    kept = keeper.keep(result.alerts, file_records([capture]), feeds)
    if kept or keeper.failures:
        failed = f"; {keeper.failures} not kept (see the log)" if keeper.failures else ""
        print(f"veilleuse: evidence kept for {len(kept)} high alert(s), encrypted, in "
              f"{keeper.store.directory}{failed}; `veilleuse evidence list`", file=sys.stderr)
    return keeper


def _device_report(args: argparse.Namespace) -> int:
    from sensor.daemon.clock import SystemClock
    from sensor.files import replace_file
    from sensor.reports.device_page import build_device_page
    from sensor.reports.html import render_device_page
    from sensor.reports.sources import (
        book_provenance,
        capture_provenance,
        read_book_alerts,
        site_pseudonyms,
    )

    config, from_file = _config(args)
    language = args.lang or (config.language if from_file else language_from_environment())
    damaged = None
    if args.capture is not None:
        feeds, result = _analysis(config, args.capture, args.source, args.feed)
        alerts, damaged = list(result.alerts), result.damaged
        provenance = capture_provenance(config, args.capture, feeds, time.time(), damaged)
    else:
        alerts = read_book_alerts(config.alerts.database)
        provenance = book_provenance(config, time.time(), SystemClock())
    page = build_device_page(alerts, args.device, provenance, pseudonyms=site_pseudonyms(config))
    html = render_device_page(page, load_catalogue(language))
    if args.output:
        replace_file(args.output, html)  # mode 0600: it names a device and what it did
    else:
        sys.stdout.write(html)
    if damaged:
        print(f"veilleuse: error: {args.capture}: {damaged}; the page covers only what was "
              "read before the damage", file=sys.stderr)
        return 1
    return 0


def _deliver(config: Config, book: AlertBook, url: str | None, timeout: float,
             feed_versions: dict[str, str] | None = None) -> int:
    """Publish the book's pending alerts; 0 when all are acknowledged, else 1 (they stay)."""
    from sensor.daemon.clock import SystemClock
    from sensor.outputs.delivery import deliver_pending
    from sensor.outputs.link import DeliveryOnly

    sender = publisher(config, book, url, role="publish", link=DeliveryOnly(feed_versions))
    delivered, health = deliver_pending(sender, book, timeout,
                                        retention_days=config.alerts.retention_days,
                                        clock_synchronised=SystemClock(),
                                        evidence_directory=config.evidence.directory)
    if delivered:
        log.info("all alerts delivered (%d this run)", health.delivered)
        return 0
    print(f"veilleuse: {health.pending} alert(s) not acknowledged by the broker within "
          f"{timeout:.0f} s ({health.problem or 'no answer'}); they stay in "
          f"{book.path} and `veilleuse publish` retries", file=sys.stderr)
    return 1


def _run_daemon(args: argparse.Namespace) -> int:
    import signal
    import threading


    config, _ = _config(args)
    if args.interface:
        config = config.model_copy(update={"network": config.network.model_copy(
            update={"interface": args.interface})})
    _log_to_journal_under_systemd()
    daemon = sensor_daemon(config, source=args.source, feed_files=args.feed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    daemon.run(stop)
    return 0


def _log_to_journal_under_systemd() -> None:
    if not os.environ.get("INVOCATION_ID"):
        return
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JournalHandler(SYSLOG_IDENTIFIER="veilleuse"))


def _status(args: argparse.Namespace) -> int:
    from sensor.daemon.health import read_health
    from sensor.firstboot_report import REPORT_NAME, read_report

    config, _ = _config(args)
    health = read_health(config.daemon.runtime_directory / "health.json")
    if health is None or time.time() - health["time"] > 30:
        print("veilleuse is not running (no fresh health file in "
              f"{config.daemon.runtime_directory}); see `systemctl status veilleuse`")
        for code, detail in read_report(config.daemon.state_directory / REPORT_NAME
                                        ).current().items():
            print(f"  - {code} (first boot): {detail}")
        return 3
    print(f"health: {health['state'].upper()}")
    for reason, detail in zip(health["reasons"], health["details"], strict=False):
        print(f"  - {reason}: {detail}")
    print(f"capture: {health['capture']}; records: {health['observations']}; "
          f"drops: {health['drop_ratio']:.2%}; alerts waiting for the broker: "
          f"{health['pending_alerts']}")
    print("feeds: " + ", ".join(f"{n} {v[:8]}" for n, v in health["feeds"].items()))
    print("evidence: " + (f"kept for high alerts, encrypted to {len(config.evidence.recipients)} "
                          "helpline key(s) (`sudo veilleuse evidence list`)"
                          if config.evidence.recipients else
                          "none kept (no helpline key in evidence.recipients)"))
    _print_recent_alerts(config.alerts.database)
    capturing = health.get("capturing", health["capture"] == "running")
    return 0 if capturing and health["state"] in ("ok", "alert") else 1


def _print_recent_alerts(book: Path) -> None:
    """The last alerts and their devices, by name and maker, if this user may read the book."""
    from sensor.alerts.book import AlertBookError, alert_of, read_recent_alerts
    from sensor.devices.model import device_label
    from sensor.report import human_time

    if not book.exists():
        return
    try:
        alerts = read_recent_alerts(book)
    except AlertBookError:
        print("recent alerts: the alert book is private; `sudo veilleuse status` lists them")
        return
    if alerts:
        print("recent alerts:")
    for stored in alerts:
        try:
            alert = alert_of(stored)
            device = device_label(alert.device, alert.identity, alert.addresses)
        except AlertBookError:
            device = stored.device
        print(f"  - {stored.severity} {stored.kind} {stored.indicator} "
              f"({stored.count}x, last {human_time(stored.last_seen)}): {device}")


def _selftest(args: argparse.Namespace) -> int:
    from sensor.daemon.selftest import run_selftest

    config, _ = _config(args)
    result = run_selftest(config, lambda: open_alert_book(config), args.timeout)
    print(result.message)
    return 0 if result.passed else 1


def _mirror(args: argparse.Namespace) -> int:
    from sensor.mirror import apply_mirror, plan_mirror

    config, _ = _config(args)
    plan = plan_mirror(args.interface or config.network.interface,
                       networkd_directory=args.networkd_dir,
                       networkmanager_directory=args.networkmanager_dir)
    if args.dry_run:
        sys.stdout.write(plan.describe())
        return 0
    apply_mirror(plan)
    state = "set passive" if plan.commands else "absent now (set when it appears, by networkd)"
    print(f"mirror interface {plan.interface}: {state}; drop-ins written; nftables table "
          "inet veilleuse loaded")
    return 0


def _core_access(args: argparse.Namespace) -> int:
    from sensor.core_access import allow, core_host, resolve, write_hosts

    config, _ = _config(args)
    host = core_host(config.mqtt.url)
    if host is None:
        print("the core is this box's own broker (mqtt.url): nothing beyond the box to allow")
        return 0
    access = resolve(host)
    if args.dry_run:
        print(access.hosts_lines() + " ".join(access.allow_arguments()))
        return 0
    write_hosts(access)
    allow(access)
    print(f"the sensor may reach the core {host} at {', '.join(access.addresses)}, "
          "and nothing else beyond the box")
    return 0


def _rules(args: argparse.Namespace) -> int:
    from sensor.suricata.rules import compile_rules, render_rules

    config, _ = _config(args)
    feeds = load_feeds(config, args.feed)
    text = render_rules(compile_rules(i for feed in feeds for i in feed.indicators),
                        header=f"feeds: {describe_feeds(feeds)}")
    if args.output:  # whole or not at all: a Suricata may reload the file at any moment
        replace_file(args.output, text, mode=RULES_FILE_MODE)
    else:
        sys.stdout.write(text)
    return 0


def _publish(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    book = open_alert_book(config)
    try:
        return _deliver(config, book, args.mqtt, args.timeout)
    finally:
        book.close()


def _tail(args: argparse.Namespace) -> int:
    from sensor.outputs.tail import follow
    from sensor.wire.broker import mqtt_settings

    config, from_file = _config(args)
    language = args.lang or (config.language if from_file else language_from_environment())
    follow(mqtt_settings(config, args.mqtt, role="tail"), config.mqtt.topic_prefix, sys.stdout,
           language, raw=args.json, limit=args.count)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sensor.demo.scenario import build_demo_capture, demo_feed_path

    with tempfile.TemporaryDirectory(prefix="veilleuse-demo-") as workdir:
        capture = build_demo_capture(args.keep or Path(workdir) / "demo.pcap")
        return _analyze(args, capture, [demo_feed_path()])


def _feeds(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    if args.feeds_command == "update":
        outcomes = update_feeds(feed_store(config), config.feeds.sources, datetime.now(UTC),
                                min_size_ratio=config.feeds.min_size_ratio)
        for outcome in outcomes:
            print(f"{outcome.name}: {outcome.status.value}: {outcome.message}")
        failed = [o for o in outcomes if o.status in (UpdateStatus.FAILED, UpdateStatus.REFUSED)]
        return 1 if failed else 0
    store = feed_store(config)
    now = datetime.now(UTC)
    status = 0
    for source in config.feeds.sources:
        info = store.info(source.name)
        if info is None:
            print(f"{source.name}: not installed (run `veilleuse feeds update`)")
            status = 1
            continue
        age = (now - info.downloaded).days
        stale = " STALE" if age > config.feeds.max_age_days else ""
        print(f"{source.name}: version {info.version}, {info.indicators} indicators, "
              f"downloaded {info.downloaded_at} ({age} days ago){stale}")
        for warning in info.warnings:  # said at install; kept here, not at every analysis
            print(f"  warning: {warning}")
        status = 1 if stale else status
    return status


def _evidence(args: argparse.Namespace) -> int:
    from sensor.evidence.store import SUFFIX, EvidenceStore

    config, _ = _config(args)
    store = EvidenceStore(config.evidence.directory)
    if args.evidence_command == "export":
        output = args.output or Path(f"{args.alert_id}{SUFFIX}")
        entry = store.export(args.alert_id, output)
        print(f"{output}: evidence of alert {entry.alert_id}, {entry.size} bytes, "
              f"sha256 {entry.sha256}; decrypt with: age -d -i key.txt {output} | tar x")
        return 0
    if not config.evidence.recipients:
        print("no helpline key is configured (evidence.recipients): no evidence is kept")
    entries = store.entries()
    for entry in entries:
        cut = ", cut at the cap" if entry.truncated else ""
        print(f"{entry.alert_id}  (published as {entry.outgoing_id})  "
              f"{datetime.fromtimestamp(entry.created, UTC):%Y-%m-%d %H:%M} UTC  "
              f"{entry.packets} packets{cut}  {entry.size} bytes  sha256 {entry.sha256}")
    print(f"{len(entries)} bundle(s), {sum(e.size for e in entries)} of "
          f"{int(config.evidence.max_total_megabytes * 1_000_000)} bytes, in "
          f"{store.directory}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    path = args.path or args.config or DEFAULT_CONFIG_PATH
    load_config(path)
    print(f"{path}: valid")
    return 0


def _first_boot(args: argparse.Namespace) -> int:
    from sensor.firstboot import Accounts, FirstBootPaths, apply_first_boot

    paths = FirstBootPaths(boot=args.boot_dir, etc=args.etc_dir, state=args.state_dir,
                           sys_net=args.sys_net_dir)
    accounts = Accounts.from_system() if paths.boot.is_dir() else Accounts()
    outcome = apply_first_boot(paths, accounts)
    texts = load_catalogue(language_from_environment())
    for step in outcome.steps:
        print(texts.text(step.key, **step.values))
    # Applied, even with problems: they are in the health (CHECK BOX), not a failed unit.
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    sys.stdout.write(render_config_docs())
    return 0


_COMMANDS = {"analyze": lambda args: _analyze(args, args.capture, args.feed), "demo": _demo,
             "feeds": _feeds, "publish": _publish, "mirror": _mirror,
             "core-access": _core_access, "rules": _rules,
             "run": _run_daemon, "status": _status, "selftest": _selftest, "tail": _tail,
             "check-config": _check_config, "config-docs": _config_docs, "evidence": _evidence,
             "first-boot": _first_boot, "report": _device_report}


def _run(args: argparse.Namespace) -> int:
    return _COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return run_command("veilleuse", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
