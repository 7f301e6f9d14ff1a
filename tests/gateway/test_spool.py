"""The gateway spool: durability, recovery, group commit, bounds, acks (gateway/spool.py)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import crc32c as crc32c_ref  # an independent CRC-32C, to check the format by hand
import pytest

from gateway.spool import (
    Record,
    RecoveryReport,
    Spool,
    SpoolClosed,
    SpoolFull,
    SpoolWriteError,
)
from gateway.spool_format import encode_record, encode_segment_header, scan_segment

REPO = Path(__file__).resolve().parents[2]


def payload_for(key: str) -> bytes:
    """A payload that can be recomputed from its key, of varying length."""
    digest = hashlib.blake2b(key.encode()).digest()
    return digest * (1 + digest[0] % 5)


def run(coro):
    return asyncio.run(coro)


async def opened(path: Path, **kw) -> tuple[Spool, RecoveryReport]:
    kw.setdefault("max_bytes", 1 << 20)
    kw.setdefault("segment_bytes", 64 << 10)
    spool = Spool(path, **kw)
    return spool, await spool.open()


async def take(spool: Spool, n: int) -> list[Record]:
    """The next n records, then proof that no further record is waiting."""
    agen = spool.records()
    try:
        got = [await asyncio.wait_for(anext(agen), 5) for _ in range(n)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(agen), 0.01)
    finally:
        await agen.aclose()
    return got


async def until(predicate, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in segment_files(path))


# --- the format ------------------------------------------------------------------------------


def test_record_bytes_match_the_documented_layout():
    frame = encode_record(7, 1_700_000_000_000_000, "dév:1:2".encode(), b"\x00\xffpayload")
    key = "dév:1:2".encode()
    assert len(frame) == 25 + len(key) + 9
    crc, length, rid, us, klen = struct.unpack_from("<IIQqB", frame)
    assert (length, rid, us, klen) == (len(frame) - 8, 7, 1_700_000_000_000_000, len(key))
    assert frame[25 : 25 + klen] == key and frame[25 + klen :] == b"\x00\xffpayload"
    assert crc == crc32c_ref.crc32c(frame[4:])  # covers the length and everything after it


def test_segment_header_and_zero_fill_are_never_records():
    header = encode_segment_header(42)
    assert header[:8] == b"RTSG\x01\x00\x00\x00" and struct.unpack_from("<Q", header, 8)[0] == 42
    assert struct.unpack_from("<I", header, 16)[0] == crc32c_ref.crc32c(header[:16])
    scan = scan_segment(header + bytes(4096), 42)
    assert scan.records == [] and scan.end == len(header) and scan.error is not None


# --- round trip and ids ----------------------------------------------------------------------


def test_records_read_back_after_reopen_in_order_with_ids_monotonic(tmp_path):
    keys = [f"dev-{i % 3}:7:{i}" for i in range(40)] + ["ü" * 127, "k" * 255]

    async def main():
        spool, report = await opened(tmp_path, segment_bytes=1024)
        assert report.records == 0 and report.segments == 0
        ids = [await spool.append(k, payload_for(k)) for k in keys]
        empty_id = await spool.append("empty", b"")
        await spool.close()
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and empty_id > ids[-1]

        spool, report = await opened(tmp_path, segment_bytes=1024)
        assert (report.records, report.unacked) == (len(keys) + 1, len(keys) + 1)
        assert report.segments == len(segment_files(tmp_path)) > 1  # it rolled over
        got = await take(spool, len(keys) + 1)
        assert [r.id for r in got] == [*ids, empty_id]
        assert [(r.key, r.payload) for r in got] == [
            *((k, payload_for(k)) for k in keys),
            ("empty", b""),
        ]
        assert all(r.appended_us > 1.6e15 for r in got)  # wall clock in µs
        for r in got:  # everything acked: sealed segments go; ids must still continue
            spool.ack(r.id)
        await until(lambda: spool.stats().segments == 1)
        await spool.close()

        spool, report = await opened(tmp_path, segment_bytes=1024)
        assert report.unacked == 0
        assert await spool.append("after", b"x") == empty_id + 1
        await spool.close()

    run(main())


def test_invalid_keys_are_refused_without_writing(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path)
        for key in ("", "k" * 256, "ü" * 128):
            with pytest.raises(ValueError):
                await spool.append(key, b"x")
        assert spool.stats().appends == 0 and segment_files(tmp_path) == []
        await spool.close()

    run(main())


# --- group commit ----------------------------------------------------------------------------


def test_concurrent_appends_share_fdatasync(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path)
        for i in range(10):  # one at a time: one fdatasync each
            await spool.append(f"seq:{i}", b"x" * 100)
        sequential = spool.stats().fsyncs
        assert sequential >= 10

        ids = await asyncio.gather(*(spool.append(f"dev:{i}", b"y" * 100) for i in range(200)))
        stats = spool.stats()
        assert len(set(ids)) == 200 and stats.appends == 210
        grouped = stats.fsyncs - sequential
        assert 1 <= grouped <= 10, f"{grouped} fdatasyncs for 200 concurrent appends"
        await spool.close()

        spool, report = await opened(tmp_path)
        assert report.records == 210
        await spool.close()

    run(main())


def test_commit_delay_gathers_appends_that_arrive_apart(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path, commit_delay_s=0.05)

        async def late(i):
            await asyncio.sleep(i * 0.002)
            return await spool.append(f"d:{i}", b"z")

        await asyncio.gather(*(late(i) for i in range(10)))
        assert spool.stats().fsyncs <= 3
        await spool.close()

    run(main())


# --- torn tails ------------------------------------------------------------------------------


def _spool_with_three(path: Path) -> tuple[bytes, int]:
    """A closed spool of records 1..3 in one segment; its bytes and the last frame's size."""

    async def main():
        spool, _ = await opened(path)
        for i in (1, 2, 3):
            await spool.append(f"dev:1:{i}", payload_for(f"dev:1:{i}"))
        await spool.close()

    run(main())
    (seg,) = segment_files(path)
    return seg.read_bytes(), 25 + len(b"dev:1:3") + len(payload_for("dev:1:3"))


def _check_recovers_two(path: Path, expect_truncated: int) -> None:
    async def main():
        spool, report = await opened(path)
        assert (report.records, report.truncated_bytes, report.corrupt_records) == (
            2,
            expect_truncated,
            0,
        )
        got = await take(spool, 2)
        assert [(r.id, r.key, r.payload) for r in got] == [
            (i, f"dev:1:{i}", payload_for(f"dev:1:{i}")) for i in (1, 2)
        ]
        assert await spool.append("new", b"after the tear") == 3  # id 3 never became durable
        await spool.close()
        spool, report = await opened(path)
        assert (report.records, report.truncated_bytes) == (3, 0)
        assert [(r.id, r.key) for r in await take(spool, 3)][-1] == (3, "new")
        await spool.close()

    run(main())


def test_torn_last_record_at_every_cut_point(tmp_path):
    data, last = _spool_with_three(tmp_path / "src")
    for cut in range(1, last):  # keep `cut` bytes of the last record
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / segment_files(tmp_path / "src")[0].name).write_bytes(data[: len(data) - last + cut])
        _check_recovers_two(d, cut)


@pytest.mark.parametrize("shape", ["zeros_after", "zeros_instead"])
def test_zero_filled_tail_is_truncated(tmp_path, shape):
    data, last = _spool_with_three(tmp_path / "src")
    d = tmp_path / "z"
    d.mkdir()
    name = segment_files(tmp_path / "src")[0].name
    if shape == "zeros_after":  # 3 complete records, then a zero page: nothing is lost
        (d / name).write_bytes(data + bytes(4096))
        run(_expect(d, records=3, truncated=4096))
    else:  # the last record's blocks never reached the disk: zeros of the same size
        (d / name).write_bytes(data[: len(data) - last] + bytes(last))
        _check_recovers_two(d, last)


async def _expect(path: Path, records: int, truncated: int) -> None:
    spool, report = await opened(path)
    assert (report.records, report.truncated_bytes) == (records, truncated)
    got = await take(spool, records)
    assert all(r.payload == payload_for(r.key) for r in got)
    await spool.close()


def test_torn_header_of_a_new_last_segment_is_removed(tmp_path):
    _spool_with_three(tmp_path)
    header = encode_segment_header(4)
    for cut in range(len(header)):
        (tmp_path / f"{4:020d}.seg").write_bytes(header[:cut])
        run(_expect(tmp_path, records=3, truncated=cut))
        assert [p.name for p in segment_files(tmp_path)] == [f"{1:020d}.seg"]


# --- crash with a real process ---------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from pathlib import Path
    from gateway.spool import Spool

    def payload_for(key):
        digest = hashlib.blake2b(key.encode()).digest()
        return digest * (1 + digest[0] % 5)

    async def writer(spool, run, task):
        for i in range(100000):
            key = f"r{run}:{task}:{i}"
            rid = await spool.append(key, payload_for(key))
            sys.stdout.write(f"{rid} {key}\\n")
            sys.stdout.flush()

    async def main():
        spool = Spool(Path(sys.argv[1]), max_bytes=64 << 20, segment_bytes=8192)
        await spool.open()
        await asyncio.gather(*(writer(spool, sys.argv[2], t) for t in range(8)))

    asyncio.run(main())
    """
)


def test_sigkill_at_random_moments_loses_no_acknowledged_append(tmp_path):
    rng = random.Random(1234)
    acked: dict[int, str] = {}
    previous_max = 0
    for cut in range(12):
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(cut)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            lines = [child.stdout.readline() for _ in range(rng.randint(1, 80))]
            time.sleep(rng.uniform(0, 0.02))  # and a moment that is not a line boundary
            child.send_signal(signal.SIGKILL)
            rest, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        this_run = {}
        for line in [*lines, *rest.splitlines()]:
            if line.strip():
                rid, key = line.split()
                this_run[int(rid)] = key
        assert this_run and min(this_run) > previous_max  # ids continue across restarts
        previous_max = max(this_run)
        acked.update(this_run)

    async def main():
        spool, report = await opened(tmp_path, max_bytes=64 << 20, segment_bytes=8192)
        assert report.corrupt_records == 0
        got = await take(spool, report.unacked)
        by_id = {r.id: r for r in got}
        assert [r.id for r in got] == sorted(by_id)
        for r in got:  # nothing torn or corrupt is ever yielded
            assert r.payload == payload_for(r.key)
        for rid, key in acked.items():  # every acknowledged append survived, intact
            assert rid in by_id and by_id[rid].key == key
        await spool.close()

    run(main())
    assert len(acked) >= 12


# --- corruption ------------------------------------------------------------------------------


FIELDS = {"crc": 1, "length": 5, "id": 9, "stamp": 17, "key_length": 24, "key": 26, "payload": 40}


@pytest.mark.parametrize("field", FIELDS)
def test_flipped_bit_in_a_sealed_segment_is_reported_never_yielded(tmp_path, caplog, field):
    keys = [f"dev:2:{i:02d}" for i in range(12)]

    async def fill():
        spool, _ = await opened(tmp_path, segment_bytes=512)
        for k in keys:
            await spool.append(k, b"p" * 60 + k.encode())
        await spool.close()

    run(fill())
    first = segment_files(tmp_path)[0]
    data = bytearray(first.read_bytes())
    scan = scan_segment(bytes(data), 1)
    in_first = [rid for rid, *_ in scan.records]
    assert len(in_first) >= 3 and len(segment_files(tmp_path)) >= 3
    victim_offset = scan.records[1][1]
    data[victim_offset + FIELDS[field]] ^= 0x10
    first.write_bytes(bytes(data))

    async def main():
        with caplog.at_level(logging.ERROR, logger="ringtail.gateway.spool"):
            spool, report = await opened(tmp_path, segment_bytes=512)
        assert report.corrupt_records == 1 and report.truncated_bytes == 0
        assert any(first.name in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        lost = set(in_first[1:])  # the bad record and the rest of its segment
        expected = [i for i in range(1, len(keys) + 1) if i not in lost]
        got = await take(spool, len(expected))
        assert [r.id for r in got] == expected
        assert all(r.payload == b"p" * 60 + r.key.encode() for r in got)
        assert await spool.append("next", b"x") == len(keys) + 1
        await spool.close()

    run(main())


def test_flipped_bit_mid_last_segment_is_corruption_not_a_tear(tmp_path, caplog):
    _spool_with_three(tmp_path)
    (seg,) = segment_files(tmp_path)
    data = bytearray(seg.read_bytes())
    first_offset = scan_segment(bytes(data), 1).records[0][1]
    data[first_offset + 40] ^= 1  # record 1's payload; records 2 and 3 follow intact
    seg.write_bytes(bytes(data))

    async def main():
        with caplog.at_level(logging.ERROR, logger="ringtail.gateway.spool"):
            spool, report = await opened(tmp_path)
        # Not truncated: the file keeps its bytes for inspection; new records go elsewhere.
        assert (report.corrupt_records, report.truncated_bytes, report.records) == (1, 0, 0)
        assert seg.stat().st_size == len(data)
        rid = await spool.append("after", b"a")
        await spool.close()
        spool, report = await opened(tmp_path)
        got = await take(spool, 1)
        assert [(r.id, r.key) for r in got] == [(rid, "after")]
        await spool.close()

    run(main())


def test_bit_rot_found_when_reading_is_never_yielded(tmp_path, caplog):
    async def main():
        spool, _ = await opened(tmp_path, cache_bytes=0)  # records() reads from disk
        for i in range(5):
            await spool.append(f"k{i}", payload_for(f"k{i}"))
        (seg,) = segment_files(tmp_path)
        data = bytearray(seg.read_bytes())
        data[scan_segment(bytes(data), 1).records[2][1] + 30] ^= 4  # record 3
        seg.write_bytes(bytes(data))
        with caplog.at_level(logging.ERROR, logger="ringtail.gateway.spool"):
            got = await take(spool, 4)
        assert [r.id for r in got] == [1, 2, 4, 5]
        assert all(r.payload == payload_for(r.key) for r in got)
        assert spool.stats().corrupt_reads == 1 and "record 3" in caplog.text
        await spool.close()

    run(main())


# --- idempotency -----------------------------------------------------------------------------


def test_same_key_is_stored_once_durable_in_flight_and_after_restart(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path, commit_delay_s=0.02)
        first = await spool.append("dev:1:100", b"batch")
        size = disk_bytes(tmp_path)
        assert await spool.append("dev:1:100", b"batch, re-sent") == first
        assert spool.lookup("dev:1:100") == first and spool.lookup("dev:1:999") is None
        assert disk_bytes(tmp_path) == size and spool.stats().appends == 1

        a, b = await asyncio.gather(
            spool.append("dev:1:200", b"x"), spool.append("dev:1:200", b"x")
        )
        assert a == b and spool.stats().appends == 2 and spool.stats().duplicates == 2

        spool.ack(first)  # acked but its segment is still here: still known
        assert spool.lookup("dev:1:100") == first
        await spool.close()

        spool, _ = await opened(tmp_path)
        assert spool.lookup("dev:1:200") == a
        assert await spool.append("dev:1:200", b"x") == a
        assert spool.stats().appends == 0
        await spool.close()

    run(main())


# --- bounds ----------------------------------------------------------------------------------


def test_spool_full_at_the_byte_bound_then_space_returns_after_acks(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path, max_bytes=4096, segment_bytes=1024)
        ids = []
        with pytest.raises(SpoolFull):
            for i in range(100):
                ids.append(await spool.append(f"k{i}", b"v" * 100))
        stats = spool.stats()
        assert stats.rejected_full == 1 and len(ids) >= 25
        assert stats.bytes == disk_bytes(tmp_path) <= 4096
        assert spool.lookup(f"k{len(ids)}") is None  # the refused append wrote nothing
        with pytest.raises(SpoolFull):
            await spool.append("again", b"v" * 100)
        assert disk_bytes(tmp_path) == stats.bytes and spool.stats().rejected_full == 2

        for rid in ids:
            spool.ack(rid)
        await until(lambda: spool.stats().segments == 1)  # sealed ones deleted, active kept
        assert disk_bytes(tmp_path) == spool.stats().bytes < 1024
        assert await spool.append("fits again", b"v" * 100) > ids[-1]
        await spool.close()

    run(main())


def test_spool_full_when_max_pending_appends_wait(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path, max_pending=2, commit_delay_s=0.2)
        waiting = [asyncio.create_task(spool.append(f"k{i}", b"v")) for i in range(2)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(SpoolFull):
            await spool.append("k2", b"v")
        assert time.monotonic() - started < 0.05  # refused at once, not after the commit
        assert sorted(await asyncio.gather(*waiting)) == [1, 2]
        assert spool.stats().rejected_full == 1 and spool.stats().appends == 2
        assert spool.lookup("k2") is None
        await spool.close()
        spool, report = await opened(tmp_path)
        assert report.records == 2
        await spool.close()

    run(main())


# --- acks ------------------------------------------------------------------------------------


def test_out_of_order_acks_delete_a_segment_only_when_all_acked(tmp_path):
    frame = 25 + 3 + 100  # key "kNN", 100-byte payload
    segment = 20 + 3 * frame  # three records per segment: 1-3, 4-6, 7-9

    async def main():
        spool, _ = await opened(tmp_path, segment_bytes=segment)
        for i in range(1, 10):
            assert await spool.append(f"k{i:02d}", b"v" * 100) == i
        names = [p.name for p in segment_files(tmp_path)]
        assert names == [f"{i:020d}.seg" for i in (1, 4, 7)]

        for rid in (3, 1, 6, 5, 9, 8, 7):
            spool.ack(rid)
        await asyncio.sleep(0.05)
        assert len(segment_files(tmp_path)) == 3  # 2 and 4 still unacked; 7-9 is active
        spool.ack(2)
        await until(lambda: len(segment_files(tmp_path)) == 2)
        assert not (tmp_path / names[0]).exists()
        assert spool.lookup("k01") is None and spool.lookup("k05") == 5
        stats = spool.stats()
        assert stats.unacked == 1 and stats.oldest_unacked_us is not None
        await spool.close()  # watermark 3: every id <= 3 acked

        spool, report = await opened(tmp_path, segment_bytes=segment)
        # 4 is unacked; 5..9 were acked above the watermark and come again (JetStream dedups).
        assert report.unacked == 6
        assert [r.id for r in await take(spool, 6)] == [4, 5, 6, 7, 8, 9]
        await spool.close()

    run(main())


def test_watermark_survives_restart_and_bounds_what_is_yielded_again(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path)
        for i in range(1, 7):
            await spool.append(f"k{i}", b"v")
        for r in await take(spool, 6):
            if r.id != 5:
                spool.ack(r.id)
        await spool.close()
        assert (tmp_path / "ack.wm").stat().st_size == 20

        spool, report = await opened(tmp_path)
        assert (report.records, report.unacked) == (6, 2)  # 5 unacked, 6 acked above W=4
        assert [r.id for r in await take(spool, 2)] == [5, 6]
        await spool.close()

        (tmp_path / "ack.wm").write_bytes(b"\0" * 20)  # corrupt: everything comes again
        spool, report = await opened(tmp_path)
        assert report.unacked == 6
        await spool.close()

    run(main())


# --- lifecycle and failures ------------------------------------------------------------------


def test_close_during_appends_completes_them(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path, commit_delay_s=0.01)
        reader = asyncio.create_task(take_until_closed(spool))
        tasks = [
            asyncio.create_task(spool.append(f"c{i}", payload_for(f"c{i}"))) for i in range(100)
        ]
        await asyncio.sleep(0)
        await asyncio.gather(spool.close(), spool.close())  # idempotent, even concurrently
        ids = await asyncio.gather(*tasks)
        assert sorted(ids) == list(range(1, 101))
        assert len(await reader) <= 100  # records() ends when the spool closes
        with pytest.raises(SpoolClosed):
            await spool.append("late", b"x")
        await spool.close()

        spool, report = await opened(tmp_path)
        assert (report.records, report.truncated_bytes) == (100, 0)
        await spool.close()

    run(main())


async def take_until_closed(spool: Spool) -> list[Record]:
    return [r async for r in spool.records()]


def test_records_waits_for_new_appends(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path)
        agen = spool.records()
        pending = asyncio.ensure_future(anext(agen))
        await asyncio.sleep(0.02)
        assert not pending.done()
        rid = await spool.append("dev:9:1", b"hello")
        record = await asyncio.wait_for(pending, 2)
        assert (record.id, record.key, record.payload) == (rid, "dev:9:1", b"hello")
        await agen.aclose()
        await spool.close()

    run(main())


def test_failed_fdatasync_fails_the_append_and_stores_nothing(tmp_path, monkeypatch):
    real = os.fdatasync
    calls = {"n": 0}

    def flaky(fd):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, "injected I/O error")
        real(fd)

    async def main():
        spool, _ = await opened(tmp_path)
        before = await spool.append("ok:1", b"a")
        monkeypatch.setattr(os, "fdatasync", flaky)
        with pytest.raises(SpoolWriteError) as caught:
            await spool.append("bad:1", b"b")
        assert isinstance(caught.value, OSError)  # the CoAP handler answers 5.03 for it
        assert spool.lookup("bad:1") is None and spool.stats().write_errors == 1
        after = await spool.append("ok:2", b"c")  # a new segment; the failed id is not reused
        monkeypatch.setattr(os, "fdatasync", real)
        assert after > before + 1
        assert [r.key for r in await take(spool, 2)] == ["ok:1", "ok:2"]
        await spool.close()

        spool, report = await opened(tmp_path)
        assert report.records == 2 and spool.lookup("bad:1") is None
        await spool.close()

    run(main())


def test_unsynced_mode_still_round_trips_and_skips_fsync(tmp_path):
    async def main():
        spool, _ = await opened(tmp_path, sync=False)
        await asyncio.gather(*(spool.append(f"n{i}", b"x") for i in range(50)))
        assert spool.stats().fsyncs == 0
        await spool.close()
        spool, report = await opened(tmp_path)
        assert report.records == 50
        await spool.close()

    run(main())
