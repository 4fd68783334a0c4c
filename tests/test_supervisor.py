"""The Suricata supervisor with a real Suricata capturing on a veth pair."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.suricata.supervisor import SupervisorSettings, SupervisorState, SuricataSupervisor
from tests.conftest import require_tool, until

READY = 90.0
BAD_RULE = 'alert dns any any -> any any (msg:"x"; nosuchkeyword; sid:1;)\n'


def _supervisor(tmp_path: Path, interface: str, **overrides: object) -> SuricataSupervisor:
    settings = SupervisorSettings(interface=interface, workdir=tmp_path / "run",
                                  startsecs=1.0, backoff_initial=0.2, **overrides)
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


def test_a_crash_is_restarted_and_logs_reopen_without_a_restart(running, tmp_path) -> None:
    supervisor, host, namespace = running
    first_pid = supervisor.process.pid

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


def test_live_suricata_loads_no_rules_and_writes_privately(tmp_path, suricata) -> None:
    supervisor = _supervisor(tmp_path, "lo")
    supervisor.start()
    try:
        assert supervisor.state is SupervisorState.STARTING, supervisor.transitions
        assert _drive_until(supervisor, SupervisorState.RUNNING), _log(supervisor)
        # Detection is Veilleuse's: Suricata neither loads rules nor runs its engine.
        [ruleset] = supervisor.control.command("ruleset-stats")
        assert ruleset["rules_loaded"] == 0, ruleset
        assert not list(supervisor.settings.workdir.glob("*.rules"))
        # What Suricata writes (raw addresses) is private whatever our umask.
        assert supervisor.eve_path.stat().st_mode & 0o077 == 0
    finally:
        supervisor.stop()


def test_a_configuration_suricata_rejects_is_a_failed_start(tmp_path, suricata) -> None:
    supervisor = _supervisor(tmp_path, "lo", max_quick_failures=2)
    supervisor.settings.workdir.mkdir(parents=True)
    supervisor.write_config = lambda: supervisor.config_path.write_text(  # type: ignore[method-assign]
        "%YAML 1.1\n---\noutputs: [oops\n")
    supervisor.start()
    assert supervisor.state is SupervisorState.BACKOFF, supervisor.transitions
    assert "suricata rejects its configuration" in supervisor.transitions[-1].reason


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
