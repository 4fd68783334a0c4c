"""The Suricata supervisor with a real Suricata capturing on a veth pair."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.errors import CaptureError
from sensor.feeds.model import Category, Indicator
from sensor.suricata.rules import compile_rules, render_rules
from sensor.suricata.supervisor import SupervisorSettings, SupervisorState, SuricataSupervisor
from tests.conftest import require_tool, until

READY = 90.0
BAD_RULE = 'alert dns any any -> any any (msg:"x"; nosuchkeyword; sid:1;)\n'


def _supervisor(tmp_path: Path, interface: str, **overrides: object) -> SuricataSupervisor:
    rules = tmp_path / "veilleuse.rules"
    rules.write_text(render_rules(compile_rules(
        [Indicator("demospy.example", Category.C2, "DemoSpy")])))
    settings = SupervisorSettings(interface=interface, workdir=tmp_path / "run",
                                  rule_files=(str(rules),), startsecs=1.0,
                                  backoff_initial=0.2, **overrides)
    return SuricataSupervisor(settings)


@pytest.fixture
def running(tmp_path, veth, suricata):
    host, namespace = veth
    supervisor = _supervisor(tmp_path, host)
    supervisor.start()
    deadline_ok = _drive_until(supervisor, SupervisorState.RUNNING)
    assert deadline_ok, (supervisor.transitions, _log(supervisor))
    yield supervisor, host, namespace
    supervisor.stop()


def _drive_until(supervisor: SuricataSupervisor, wanted: SupervisorState,
                 timeout: float = READY) -> bool:
    """Poll as the daemon loop does, waiting on the state condition between polls."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor.poll() is wanted:
            return True
        supervisor.wait_for_state(wanted, 0.2)
    return supervisor.state is wanted


def _log(supervisor: SuricataSupervisor) -> str:
    path = supervisor.settings.workdir / "suricata.out"
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def test_a_crash_is_restarted_and_rules_reload_without_a_restart(running, tmp_path) -> None:
    supervisor, host, namespace = running
    first_pid = supervisor.process.pid
    supervisor.reload_rules()
    assert supervisor.process.pid == first_pid and supervisor.state is SupervisorState.RUNNING

    traffic = Traffic()
    traffic.dns(DEFAULT_START, "192.168.1.10", "192.168.1.1", "api.demospy.example")
    replayed = traffic.write(tmp_path / "dns.pcap")
    subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q", "-i",
                    host.replace("vlh", "vli"), str(replayed)], check=True, capture_output=True)
    assert until(lambda: (stats := supervisor.interface_stats()) is not None and
                 stats.packets > 0, 15), "the replayed packet should be counted"

    eve = supervisor.eve_path
    os.replace(eve, eve.with_name("eve.json.1"))
    answers: list[tuple[bool, str]] = []
    supervisor.request_reopen_logs(lambda ok, message: answers.append((ok, message)))
    assert until(lambda: supervisor.poll() and answers, 30)
    assert answers == [(True, "log files reopened")]
    subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q", "-i",
                    host.replace("vlh", "vli"), str(replayed)], check=True, capture_output=True)
    assert until(eve.exists, 15), "Suricata writes its next record to a new eve.json"

    os.kill(first_pid, signal.SIGKILL)
    assert _drive_until(supervisor, SupervisorState.BACKOFF, 30)
    assert "killed by SIGKILL" in supervisor.transitions[-1].reason
    assert _drive_until(supervisor, SupervisorState.RUNNING), _log(supervisor)
    assert supervisor.process.pid != first_pid
    states = [t.new for t in supervisor.transitions]
    assert states == [SupervisorState.STARTING, SupervisorState.RUNNING,
                      SupervisorState.BACKOFF, SupervisorState.STARTING, SupervisorState.RUNNING]


def test_an_interface_that_does_not_exist_ends_in_fatal_and_is_retried_slowly(
        tmp_path, suricata) -> None:
    supervisor = _supervisor(tmp_path, "nosuchif0", max_quick_failures=3, start_timeout=20,
                             fatal_retry=0.5, fatal_retry_max=1.0)
    supervisor.start()
    assert _drive_until(supervisor, SupervisorState.FATAL, 120), supervisor.transitions
    fatal = supervisor.transitions[-1].reason
    assert "3 failed starts in a row" in fatal and "trying again in 0 s" in fatal
    assert [t.new for t in supervisor.transitions].count(SupervisorState.BACKOFF) == 2
    # FATAL is a reported state, never the end: the supervisor starts Suricata again.
    assert _drive_until(supervisor, SupervisorState.STARTING, 30), supervisor.transitions
    assert _drive_until(supervisor, SupervisorState.FATAL, 60), supervisor.transitions
    assert "trying again in 1 s" in supervisor.transitions[-1].reason
    supervisor.stop()


def test_rules_suricata_rejects_fall_back_to_no_rules_and_capture_goes_on(
        tmp_path, suricata) -> None:
    supervisor = _supervisor(tmp_path, "lo")
    Path(supervisor.settings.rule_files[0]).write_text(BAD_RULE)
    supervisor.start()
    try:
        assert supervisor.state is SupervisorState.STARTING, supervisor.transitions
        assert supervisor.rules_in_use == ()
        assert "suricata rejects its configuration or rules" in supervisor.rules_problem
        assert "no Suricata rules" in supervisor.rules_problem
        assert _drive_until(supervisor, SupervisorState.RUNNING), _log(supervisor)
        # What Suricata writes (raw addresses) is private whatever our umask.
        assert supervisor.eve_path.stat().st_mode & 0o077 == 0
    finally:
        supervisor.stop()


def test_rejected_rules_fall_back_to_the_last_good_ones(tmp_path, suricata) -> None:
    supervisor = _supervisor(tmp_path, "lo")
    rules = Path(supervisor.settings.rule_files[0])
    good = rules.read_text()
    supervisor.start()  # accepted: kept as the last good rules
    assert supervisor.rules_problem is None
    assert _drive_until(supervisor, SupervisorState.RUNNING), _log(supervisor)
    # A reload of rejected rules raises and leaves Suricata running as it was.
    rules.write_text(BAD_RULE)
    with pytest.raises(CaptureError, match="rejects"):
        supervisor.reload_rules()
    assert supervisor.state is SupervisorState.RUNNING
    assert str(rules) in supervisor.config_path.read_text()
    supervisor.stop()
    # A restart with the bad file on disk uses the copy of the good one.
    supervisor.start()
    try:
        assert supervisor.state is SupervisorState.STARTING, supervisor.transitions
        assert "the last good rules" in supervisor.rules_problem
        [copy] = supervisor.rules_in_use
        assert Path(copy).read_text() == good and copy in supervisor.config_path.read_text()
        assert _drive_until(supervisor, SupervisorState.RUNNING), _log(supervisor)
        rules.write_text(good)  # fixed: a reload goes back to the configured file
        supervisor.reload_rules()
        assert supervisor.rules_problem is None and supervisor.rules_in_use == (str(rules),)
    finally:
        supervisor.stop()


def test_an_unexpected_error_in_the_supervising_thread_is_reported_and_survived(
        tmp_path, suricata) -> None:
    import threading

    supervisor = _supervisor(tmp_path, "lo")
    real_poll, failures = supervisor.poll, []

    def poll_failing_twice() -> SupervisorState:
        if len(failures) < 2:
            failures.append(1)
            raise KeyError("injected")
        return real_poll()

    supervisor.poll = poll_failing_twice
    stop = threading.Event()
    worker = threading.Thread(target=supervisor.run, args=(stop, 0.05))
    worker.start()
    try:
        assert until(lambda: supervisor.errors.count == 2 and
                     supervisor.state is SupervisorState.RUNNING, READY), _log(supervisor)
        assert supervisor.errors.problem is None  # over: the last pass went through
        assert "KeyError: 'injected'" in supervisor.errors.last
    finally:
        stop.set()
        worker.join()
    assert supervisor.state is SupervisorState.STOPPED
