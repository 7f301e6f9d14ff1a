"""The whole pipeline on this machine: sample-to-queryable latency and the readings/s the
stack sustains, with virtual boards running the real firmware (`ringtail stack`).

    just bench pipeline
    RINGTAIL_BENCH_DEVICES=6 RINGTAIL_BENCH_S=120 RINGTAIL_BENCH_PERIOD_MS=100 just bench pipeline

Boards sample temperature and humidity every PERIOD_MS and close a window every BATCH_S;
after S seconds the stack stops (gateway drained, writer flushed) and the rows are read
from the stack's chDB. Latencies, per reading, from the readings and batches tables:
- sample → queryable: `batches.inserted - readings.ts` (the board's time estimate; the
  clock check in tests/e2e bounds its error to a few ms): the window a reading waits in
  (up to BATCH_S) plus the rest;
- last reading → queryable: `inserted - max(ts)` per batch: what the pipeline adds to
  batching (the wait for the window's end, up to one period, then CoAP, validation, spool
  fsync, JetStream, the writer's fetch and insert);
- gateway receive → queryable: `inserted - received`: the cloud side alone.
Throughput: readings stored with ts in the steady part of the run (after the first window
of every board), per second. The boards (one MicroPython process each, plus the relay
threads of this process) share the 2 cores with the rest, so this is what the whole stack
sustains here, not a gateway limit: `just bench gateway` measures that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ringtail.stack import Stack, StackConfig

DEVICES = int(os.environ.get("RINGTAIL_BENCH_DEVICES", "3"))
DURATION_S = float(os.environ.get("RINGTAIL_BENCH_S", "60"))
PERIOD_MS = int(os.environ.get("RINGTAIL_BENCH_PERIOD_MS", "200"))
BATCH_S = int(os.environ.get("RINGTAIL_BENCH_BATCH_S", "2"))

# Run in a child: chDB allows one database path per process, and `python -m bench` may
# have opened another already. Prints one JSON object.
_QUERY = """
import json, sys
from pathlib import Path
from cloud.store import ChdbStore
store = ChdbStore(Path(sys.argv[1]))
warm = sys.argv[2]
q = lambda sql: store.query(sql)
us = "toUnixTimestamp64Micro"
lat = q(f'''
SELECT quantiles(0.5, 0.99)({us}(b.inserted) - {us}(r.ts)),
       quantiles(0.5, 0.99)({us}(b.inserted) - {us}(b.received)),
       count()
FROM readings AS r FINAL
INNER JOIN batches AS b ON r.device = b.device AND r.boot = b.boot AND r.batch_seq = b.seq
''')[0]
close = q('''
SELECT quantiles(0.5, 0.99)(toUnixTimestamp64Micro(inserted) - last) FROM (
  SELECT any(b.inserted) AS inserted, max(toUnixTimestamp64Micro(r.ts)) AS last
  FROM readings AS r FINAL
  INNER JOIN batches AS b ON r.device = b.device AND r.boot = b.boot AND r.batch_seq = b.seq
  GROUP BY r.device, r.boot, r.batch_seq)
''')[0]
span = q(f'''
SELECT count(), toUnixTimestamp64Micro(max(ts)) - toUnixTimestamp64Micro(min(ts))
FROM readings FINAL WHERE ts >= toDateTime64('{warm}', 6, 'UTC')
''')[0]
print(json.dumps({"sample": lat[0], "receive": lat[1], "rows": lat[2], "close": close[0],
                  "steady_rows": span[0], "steady_us": span[1]}))
"""


def _ms(us: float) -> str:
    return f"{us / 1000:,.0f}"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ringtail-bench-pipeline-") as tmp:
        var = Path(tmp) / "var"
        config = StackConfig.on_free_ports(
            var,
            devices=DEVICES,
            batch_s=BATCH_S,
            health_s=max(5, BATCH_S),
            period_ms=PERIOD_MS,
        )
        lines: list[str] = []
        t0 = time.monotonic()
        stack = Stack(config, say=lines.append).start()
        up_s = time.monotonic() - t0
        warm = time.strftime(
            "%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + BATCH_S + 1)
        )  # after every board's first window
        try:
            end = time.monotonic() + DURATION_S
            while time.monotonic() < end:
                stack.check()
                time.sleep(1)
        finally:
            stack.stop()
        done = subprocess.run(
            [sys.executable, "-c", _QUERY, str(var / "clickhouse"), warm],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
    rate = r["steady_rows"] / (r["steady_us"] / 1e6) if r["steady_us"] else 0.0
    print(
        f"{DEVICES} virtual boards, temperature + humidity every {PERIOD_MS} ms, "
        f"{BATCH_S} s windows, {DURATION_S:.0f} s; stack up (flash included) in {up_s:.1f} s"
    )
    print()
    print("| latency per reading | p50 ms | p99 ms |")
    print("|---|---|---|")
    s, c, g = r["sample"], r["close"], r["receive"]
    print(f"| sample → queryable | {_ms(s[0])} | {_ms(s[1])} |")
    print(f"| a batch's last reading → queryable | {_ms(c[0])} | {_ms(c[1])} |")
    print(f"| gateway receive → queryable (cloud side) | {_ms(g[0])} | {_ms(g[1])} |")
    print()
    print("| throughput | value |")
    print("|---|---|")
    print(f"| rows stored | {r['rows']:,} |")
    print(f"| readings/s sustained (steady part) | {rate:,.1f} |")
    print(f"| per board | {rate / max(1, DEVICES):,.1f} |")


if __name__ == "__main__":
    main()
