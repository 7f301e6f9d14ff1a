"""A tiny test runner for MicroPython scripts, read by tests/firmware/mprun.py.

Protocol, one line each: "PASS <name> <seconds>", "FAIL <name>: <error>" (followed by the
traceback), "METRIC <name> <value>", and last "RESULT pass=<n> fail=<m>". Exit status 1 if
anything failed.
"""

import gc
import sys
import time


class Failure(Exception):
    pass


def check(cond, *msg):
    if not cond:
        raise Failure(" ".join(str(m) for m in msg))


def metric(name, value):
    print("METRIC", name, value)


def tmpdir():
    return sys.argv[1] if len(sys.argv) > 1 else "/tmp"


def run(tests):
    npass = 0
    nfail = 0
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for fn in tests:
        name = fn.__name__
        if only and name != only:
            continue
        gc.collect()
        t0 = time.ticks_ms()
        try:
            fn()
        except Exception as e:  # report every failure and keep going
            nfail += 1
            print(f"FAIL {name}: {e!r}")
            sys.print_exception(e)
            continue
        npass += 1
        print(f"PASS {name} {time.ticks_diff(time.ticks_ms(), t0) / 1000:.2f}")
    print(f"RESULT pass={npass} fail={nfail}")
    sys.exit(1 if nfail or not npass else 0)
