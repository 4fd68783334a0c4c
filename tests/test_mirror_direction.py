"""The one-way mirror check: TCP connections seen in one direction only make a health reason."""

from __future__ import annotations

from sensor.daemon.mirror_direction import MIN_FLOWS, WINDOW_SECONDS, MirrorDirection
from sensor.observations import DnsQuery, Endpoints, Flow

T = 1_700_000_000.0


def _connection(index: int, *, answered: bool, time: float = T, client_packets: int = 8,
                client_bytes: int = 3_000, transport: str = "tcp") -> Flow:
    """A connection from the phone; the server's side is empty unless ``answered``."""
    endpoints = Endpoints("192.168.1.10", "203.0.113.9", 40000 + index, 443, transport)
    to_client = (6, 5_000) if answered else (0, 0)
    return Flow(time + index, endpoints, time + index + 1, client_packets + to_client[0],
                client_bytes + to_client[1], *to_client)


def test_connections_seen_one_way_say_how_many_and_what_to_do() -> None:
    mirror = MirrorDirection("TLS server names are missed")
    mirror.note([_connection(i, answered=i >= 41) for i in range(43)])
    assert mirror.problem() == (
        "41 of 43 TCP connections in the last 10 min were seen in one direction only: the "
        "switch mirrors one direction of the port; set its mirror session to both directions "
        "(rx and tx). Until then TLS server names are missed")


def test_a_mirror_of_the_server_side_only_is_one_way_too() -> None:
    endpoints = [Endpoints("203.0.113.9", "192.168.1.10", 443, 40000 + i, "tcp")
                 for i in range(MIN_FLOWS)]
    mirror = MirrorDirection()
    mirror.note([Flow(T + i, e, T + i + 1, 9, 8_000, 0, 0) for i, e in enumerate(endpoints)])
    mirror.note([Flow(T + i, e, T + i + 1, 9, 8_000, 9, 8_000) for i, e in
                 enumerate(endpoints[:1])])
    assert mirror.problem() is not None


def test_two_way_connections_are_fine() -> None:
    mirror = MirrorDirection()
    mirror.note([_connection(i, answered=True) for i in range(100)])
    assert mirror.problem() is None


def test_a_mix_below_the_share_is_not_a_one_way_mirror() -> None:
    mirror = MirrorDirection()  # servers that do not answer some connections: not the mirror
    mirror.note([_connection(i, answered=i % 5 == 0) for i in range(100)])
    assert mirror.problem() is None


def test_unanswered_syn_retries_alone_say_nothing() -> None:
    mirror = MirrorDirection()
    mirror.note([_connection(i, answered=False, client_packets=5, client_bytes=5 * 74)
                 for i in range(200)])
    mirror.note([_connection(i, answered=False, client_packets=2, client_bytes=2_000)
                 for i in range(200)])
    assert mirror.problem() is None


def test_too_few_connections_are_not_judged() -> None:
    mirror = MirrorDirection()
    mirror.note([_connection(i, answered=False) for i in range(MIN_FLOWS - 1)])
    assert mirror.problem() is None
    mirror.note([_connection(MIN_FLOWS, answered=False)])
    assert mirror.problem() is not None


def test_udp_other_records_and_uncounted_flows_are_ignored() -> None:
    mirror = MirrorDirection()
    query = DnsQuery(T, Endpoints("192.168.1.10", "192.168.1.1", 5353, 53, "udp"), "a.org", "A")
    uncounted = Flow(T, Endpoints("192.168.1.10", "203.0.113.9", 1, 443, "tcp"), T + 1, 9, 4000)
    mirror.note([query, uncounted] * 50 +
                [_connection(i, answered=False, transport="udp") for i in range(50)])
    assert mirror.problem() is None


def test_the_reason_clears_when_two_way_traffic_comes_back() -> None:
    mirror = MirrorDirection()
    mirror.note([_connection(i, answered=False) for i in range(50)])
    assert mirror.problem() is not None
    mirror.note([_connection(i, answered=True, time=T + 60) for i in range(10)])
    assert mirror.problem() is None, "most recent connections are two-way again"
    mirror.note([_connection(i, answered=True, time=T + WINDOW_SECONDS + 120)
                 for i in range(MIN_FLOWS)])
    mirror.note([_connection(i, answered=False, time=T + WINDOW_SECONDS + 130)
                 for i in range(2)])
    assert mirror.problem() is None, "the one-way connections left the window"
