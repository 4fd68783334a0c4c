"""Feed loading at start-up: `python bench/feed_bench.py` prints the median time to load the feeds.

The live sensor and every `veilleuse analyze` load the feeds before anything
else, so this is start-up latency on the Pi.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.run import feeds  # noqa: E402
from sensor.feeds.store import load_feed_file  # noqa: E402


def main(repeat: int = 9) -> None:
    logging.basicConfig(level=logging.ERROR)
    paths = feeds()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        loaded = [load_feed_file(path) for path in paths]
        times.append(time.perf_counter() - start)
    count = sum(feed.indicator_count for feed in loaded)
    print(f"feed loading ({', '.join(p.name for p in paths)}; {count} indicators): "
          f"median {statistics.median(times) * 1000:.0f} ms over {repeat} runs")


if __name__ == "__main__":
    main()
