"""Run one offline analysis and print its wall time and this process's peak memory as JSON.

A separate process so the peak is the analyzer's own (Suricata, its child,
is not counted). The peak is VmHWM, which starts afresh at exec, unlike
ru_maxrss, which a child inherits from whatever forked it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from sensor.analysis import analyze_capture
from sensor.config import Config
from sensor.feeds.store import load_feed_file
from sensor.wiring import build_engine, build_matcher, open_source


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    capture, source, *feeds = sys.argv[1:]
    config = Config()
    started = time.perf_counter()
    matcher = build_matcher([load_feed_file(Path(feed)) for feed in feeds], config)
    loaded = time.perf_counter()
    result = analyze_capture(Path(capture), open_source(source, config),
                             build_engine(config, matcher))
    done = time.perf_counter()
    print(json.dumps({"replay_seconds": done - loaded, "feed_seconds": loaded - started,
                      "alerts": len(result.alerts),
                      "records": result.records, "observations": result.observations,
                      "rss_mb": peak_rss_mb(),
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
