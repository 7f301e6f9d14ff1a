"""Container health checks for the Ringtail cloud image (cloud/deploy/Dockerfile). The slim
image has no curl or wget, so Python does it; exit 0 healthy, 1 not.

    python healthcheck.py api      GET http://127.0.0.1:$RINGTAIL_API_PORT/healthz answers 200
                                   (the API answers 503 while ClickHouse does not answer)
    python healthcheck.py writer   this container holds an established TCP connection to the
                                   port of $NATS_URL: the writer opens NATS only after
                                   ClickHouse answered and the schema is migrated, and keeps
                                   that connection while it runs

Standard library only; the image copies this file to /usr/local/lib/ringtail/.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

TCP_ESTABLISHED = "01"  # the `st` column of /proc/net/tcp
PROC_NET = ("/proc/net/tcp", "/proc/net/tcp6")


def api_healthy(env: Mapping[str, str], timeout_s: float = 4.0) -> bool:
    port = int(env.get("RINGTAIL_API_PORT") or "8000")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def nats_port(env: Mapping[str, str]) -> int:
    url = env.get("NATS_URL") or "nats://127.0.0.1:4222"
    return urlsplit(url).port or 4222


def established_remote_ports(tables: Iterable[str]) -> set[int]:
    """Remote ports of the ESTABLISHED connections in /proc/net/tcp-style tables."""
    ports = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_ESTABLISHED:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def writer_healthy(env: Mapping[str, str], proc_net: Iterable[str] = PROC_NET) -> bool:
    tables = []
    for path in proc_net:
        try:
            with open(path) as f:
                tables.append(f.read())
        except OSError:
            continue
    return nats_port(env) in established_remote_ports(tables)


def main(argv: list[str]) -> int:
    checks: dict[str, Callable[[Mapping[str, str]], bool]] = {
        "api": api_healthy,
        "writer": writer_healthy,
    }
    if len(argv) != 1 or argv[0] not in checks:
        print(f"usage: healthcheck.py {{{','.join(checks)}}}", file=sys.stderr)
        return 1  # not 2: Docker reserves that exit status of a health check
    return 0 if checks[argv[0]](os.environ) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
