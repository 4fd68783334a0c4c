"""tshark (through pyshark) as a capture source, for laptops and cross-checks.

pyshark drives tshark from an asyncio loop and can leave tshark running when
its consumer stops early, so it runs in a child process of its own: the
parent only receives observation batches, and whatever happens (an error, the
consumer stopping, Ctrl-C) the child closes its capture and is joined or
terminated. Slower than Suricata; meant for offline analysis.

tshark's exit status is checked (pyshark kills it at end-of-file before
looking): a crash or a capture tshark finds damaged ends the run with the
observations read so far and the reason in ``stats.damaged``, never a clean
"no alert" and never a traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sensor.capture import scan_capture
from sensor.capture.stats import SourceStats
from sensor.errors import CaptureError, CaptureToolMissing
from sensor.observations import Observation

log = logging.getLogger(__name__)

DISPLAY_FILTER = "tcp || udp"
_BATCH = 500
_POLL_SECONDS = 1.0


class TsharkSource:
    """Reads a capture file with tshark in a child process."""

    name = "tshark"

    def __init__(self, binary: str = "tshark", batch: int = _BATCH) -> None:
        self.binary = binary
        self.batch = batch
        self.stats = SourceStats(self.name)

    def read(self, pcap: Path) -> Iterator[Observation]:
        tshark = shutil.which(self.binary)
        if tshark is None:
            raise CaptureToolMissing(self.binary, "tshark")
        capture = scan_capture(pcap)
        pcap = capture.path
        self.stats.damaged = capture.damage
        context = multiprocessing.get_context("spawn")
        channel: multiprocessing.Queue[tuple[str, Any]] = context.Queue(maxsize=64)
        worker = context.Process(target=_run_worker, args=(str(pcap), tshark, self.batch,
                                                          channel), daemon=True)
        worker.start()
        finished = False
        try:
            yield from self._receive(channel, worker)
            finished = True
        finally:
            if not finished:
                worker.terminate()  # the worker turns SIGTERM into a clean close of tshark
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
            channel.close()
            channel.join_thread()
        log.info("%s", self.stats.summary())

    def _receive(self, channel: multiprocessing.Queue, worker: Any) -> Iterator[Observation]:
        while True:
            try:
                kind, payload = channel.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not worker.is_alive():
                    raise CaptureError(f"the tshark worker died (exit code {worker.exitcode})") \
                        from None
                continue
            if kind == "batch":
                self.stats.observations += len(payload)
                yield from payload
            elif kind == "skipped":
                reason, detail = payload
                self.stats.skip(reason, detail)
            elif kind == "done":
                self.stats.records += payload
                return
            elif kind == "damaged":
                packets, reason = payload
                self.stats.records += packets
                self.stats.damaged = reason if self.stats.damaged is None else \
                    f"{self.stats.damaged}; {reason}"
                return
            else:
                raise CaptureError(f"tshark failed: {payload}")


def _run_worker(pcap: str, tshark: str, batch_size: int, channel: Any) -> None:
    """The child: pyshark over tshark, observations sent in batches."""
    import pyshark  # imported here: the parent never loads pyshark's event loop

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so ``finally`` closes tshark

    from sensor.capture.tshark_packets import TsharkDecoder, TsharkFieldError

    capture = None
    decoder = TsharkDecoder()
    batch: list[Observation] = []
    packets = 0
    failure: str | None = None
    try:
        capture = _checked_capture(pyshark)(pcap, keep_packets=False,
                                            display_filter=DISPLAY_FILTER, tshark_path=tshark)
        for packet in capture:
            packets += 1
            try:
                batch.extend(decoder.decode(packet))
            except TsharkFieldError as error:
                channel.put(("skipped", ("undecodable packet", str(error))))
            except Exception as error:  # noqa: BLE001 - the record boundary: count, go on
                channel.put(("skipped", ("malformed packet", f"{type(error).__name__}: {error}")))
            if len(batch) >= batch_size:
                channel.put(("batch", batch))
                batch = []
    except Exception as error:  # noqa: BLE001 - reported to the parent with what was read
        failure = f"tshark stopped after {packets} packet(s): {type(error).__name__}: " \
            f"{str(error).splitlines()[0] if str(error) else ''}"
    finally:
        if capture is not None:
            capture.close()
    failure = failure or (capture.failure() if capture is not None else None)
    batch.extend(decoder.finish())
    channel.put(("batch", batch))
    channel.put(("damaged", (packets, failure)) if failure else ("done", packets))


def _checked_capture(pyshark: Any) -> type:
    """pyshark's FileCapture, keeping tshark's exit status instead of killing it unchecked."""
    import asyncio
    import contextlib

    class CheckedCapture(pyshark.FileCapture):
        exit_codes: list[int]

        async def _cleanup_subprocess(self, process: Any) -> None:
            if process.returncode is None and self._eof_reached:
                # At the end of its output tshark is exiting: wait for its real status.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                await super()._cleanup_subprocess(process)
                return
            self.__dict__.setdefault("exit_codes", []).append(process.returncode)

        def failure(self) -> str | None:
            bad = [code for code in self.__dict__.get("exit_codes", []) if code != 0]
            if not bad:
                return None
            how = f"killed by signal {-bad[0]}" if bad[0] < 0 else f"exit code {bad[0]}"
            last = (self._last_error_line or "").strip()
            if last.startswith("Running as user"):  # tshark's warning under root, not a reason
                last = ""
            return f"tshark failed ({how})" + (f": {last}" if last else "")

    return CheckedCapture
