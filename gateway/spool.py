"""The gateway's disk spool: a device batch is durable here before the device gets its 2.04.

The CoAP handler calls `append(key, payload)`; once it returns an id the batch is on disk
(written and fdatasync'd) and the device may forget it. The JetStream publisher reads
`records()` and calls `ack(id)` when JetStream has acknowledged a record; a segment file is
deleted only when every record in it is acked.

    spool = Spool(Path("var/gateway/spool"), max_bytes=1 << 30)
    report = await spool.open()           # recovers what a crash left
    rid = await spool.append("dev-1:7:1000", batch)  # SpoolFull -> answer 5.03
    async for rec in spool.records(): ...; spool.ack(rec.id)
    await spool.close()

The on-disk format is in gateway/spool_format.py.

Recovery rules (open())
-----------------------
Segments are scanned in id order; every record's CRC is checked.
- Last segment: the first invalid record and everything after it is a torn tail: the file is
  truncated there (durably) and the bytes are reported as `truncated_bytes`. A last segment
  with a torn header is removed whole. Exception: if a valid record follows the invalid one
  at its declared length, the damage is not a tear but corruption, handled as below (the
  file is kept and new records go to a new segment).
- Earlier (sealed) segments, and corruption as above: the invalid record is counted in
  `corrupt_records`, logged at ERROR, and the rest of that segment is dropped (not loaded);
  the file is kept until its loaded records are acked.
- Records with id <= the watermark are loaded as acked; the rest are yielded by records(),
  in id order. Records acked after the last persisted watermark are yielded again after a
  restart: JetStream drops them by their Nats-Msg-Id (the key) within its duplicate window.
- Sealed segments with no unacked record are deleted. Ids continue after the highest of:
  every recovered id, the watermark, every kept segment's first id (so names never clash).
- A record that fails its CRC when records() reads it later (bit rot) is logged at ERROR,
  counted in stats().corrupt_reads and treated as acked: it is never yielded.

Idempotency
-----------
append() with a key already durable in a kept segment returns that record's id and writes
nothing; with a key still being committed it waits for that commit. The map covers every
record in the segment files (acked or not): once a segment is deleted its keys are forgotten,
and a batch re-sent after that is stored again; JetStream's duplicate window drops it.

Memory
------
Payloads are not kept for the spool's lifetime: records() re-reads them from the segment
files, a run of records per read, in a reader thread. Freshly committed payloads are kept
in a cache of at most `cache_bytes` until records() yields them, so a publisher that keeps up
never touches the disk. What stays in memory per record on disk is its index entry (id,
offset, time, key) and its key in the idempotency map, about 200 bytes; the bound is
max_bytes / smallest record. Payloads waiting to be written are bounded by max_pending and
max_bytes.

Durability
----------
With sync=True (default) an append returns only after its bytes are fdatasync'd; creating a
segment fsyncs the file and the directory; deleting one fsyncs the directory. sync=False
skips every fsync: UNSAFE, acknowledged batches can be lost on a power cut (a killed process
loses nothing); for benchmarks only. A write or fsync error fails the appends of that commit
with SpoolWriteError (answer 5.03), they are removed from the file (ftruncate, best effort)
and the segment is retired; if the truncation failed they may reappear after a restart and be
published, which the device's own retry under the same key makes harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.spool_format import (
    RECORD_OVERHEAD_BYTES,
    SEGMENT_HEADER_BYTES,
    SEGMENT_SUFFIX,
    WATERMARK_NAME,
    CorruptRecord,
    decode_record,
    decode_watermark,
    encode_record,
    encode_segment_header,
    encode_watermark,
    scan_segment,
    segment_name,
)

__all__ = [
    "Record",
    "RecoveryReport",
    "Spool",
    "SpoolClosed",
    "SpoolFull",
    "SpoolStats",
    "SpoolWriteError",
]

log = logging.getLogger("ringtail.gateway.spool")

# Acks are frequent; persisting each one would cost an fsync per publish. Losing up to this
# much watermark progress in a crash only means re-publishing, which JetStream dedups.
WATERMARK_PERSIST_INTERVAL_S = 1.0
# One pread in records() covers at most this many bytes of consecutive records.
READ_CHUNK_BYTES = 1 << 20
# records() retries a segment read that failed with an I/O error after this long.
READ_RETRY_S = 1.0

_T = TypeVar("_T")


class SpoolFull(Exception):
    """The byte bound or the pending-write queue is full: the caller answers 5.03."""


class SpoolWriteError(OSError):
    """Writing or syncing this append failed; it is not stored: the caller answers 5.03."""


class SpoolClosed(RuntimeError):
    """append() after close() began (or before open())."""


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    key: str
    payload: bytes
    appended_us: int  # wall clock at append, µs since the Unix epoch


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    segments: int  # segment files found
    records: int  # valid records loaded (acked or not)
    unacked: int  # of those, above the ack watermark: records() yields them
    truncated_bytes: int  # torn tail cut from the last segment
    corrupt_records: int  # invalid records in sealed segments (rest of the segment dropped)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    bytes: int  # on disk: segment files, headers included
    unacked: int
    oldest_unacked_us: int | None  # appended_us of the oldest unacked record
    segments: int
    appends: int  # records written by this instance (duplicates not counted)
    fsyncs: int  # fdatasync/fsync calls by this instance, all files and the directory
    rejected_full: int  # appends refused with SpoolFull
    pending: int  # appends queued or being committed
    duplicates: int  # appends answered from the idempotency map, without a write
    write_errors: int  # commits that failed (their appends got SpoolWriteError)
    corrupt_reads: int  # records that failed their CRC when read back by records()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:  # not expected from a regular file, but never loop forever
            raise OSError(f"pwrite wrote {written} bytes")
        view, offset = view[written:], offset + written


# --- the spool -------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Segment:
    path: Path
    first_id: int
    size: int  # bytes of the file we count: header, committed records, kept corrupt bytes
    end: int = SEGMENT_HEADER_BYTES  # offset after the last indexed record
    fd: int = -1  # open for writing only while this is the active segment
    sealed: bool = False  # no more records will be written to it
    broken: bool = False  # a write failed: retire it at the next commit
    unacked: int = 0
    # The index of its committed records, in id order (parallel arrays: compact).
    ids: array = field(default_factory=lambda: array("Q"))
    offsets: array = field(default_factory=lambda: array("Q"))
    stamps: array = field(default_factory=lambda: array("q"))
    keys: list[str] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Pending:
    record_id: int
    key: str
    appended_us: int
    payload: bytes
    frame: bytes
    future: asyncio.Future[int]


def _retrieve(future: asyncio.Future[int]) -> None:
    # A failed commit whose caller was cancelled must not log "exception never retrieved".
    if not future.cancelled():
        future.exception()


class Spool:
    """Append-only, CRC-framed, group-committed segment files (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 4 << 20,
        sync: bool = True,
        commit_delay_s: float = 0.0,
        max_pending: int = 1024,
        cache_bytes: int = 8 << 20,
    ) -> None:
        if segment_bytes <= SEGMENT_HEADER_BYTES + RECORD_OVERHEAD_BYTES:
            raise ValueError(f"segment_bytes too small: {segment_bytes}")
        if max_bytes < segment_bytes:
            raise ValueError(f"max_bytes ({max_bytes}) must be >= segment_bytes")
        if max_pending < 1 or commit_delay_s < 0 or cache_bytes < 0:
            raise ValueError("max_pending must be >= 1, commit_delay_s and cache_bytes >= 0")
        self._dir = Path(directory)
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._sync = sync
        self._commit_delay_s = commit_delay_s
        self._max_pending = max_pending
        self._cache_bytes_max = cache_bytes

        self._state = "new"  # -> open -> closing -> closed
        self._dir_fd = -1
        self._io_pool: ThreadPoolExecutor | None = None  # every write, fsync, unlink: in order
        self._read_pool: ThreadPoolExecutor | None = None  # records() reads, beside commits
        self._task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # the commit task has work
        self._ready = asyncio.Event()  # records() has something new (or the spool closed)

        self._segments: list[_Segment] = []  # in id order
        self._active: _Segment | None = None
        self._next_id = 1
        self._keys: dict[str, int] = {}  # key -> id, for every record in a kept segment
        self._inflight: dict[str, _Pending] = {}  # key -> its append being committed
        self._queue: list[_Pending] = []  # appends waiting for the commit task
        self._unacked: dict[int, _Segment] = {}
        self._order: deque[int] = deque()  # unacked ids, id order; front may hold acked ones
        self._to_yield: deque[int] = deque()  # durable ids records() has not yielded yet
        self._cache: dict[int, bytes] = {}  # payloads of committed, not yet yielded records
        self._cache_bytes = 0
        self._doomed: list[_Segment] = []  # sealed, fully acked: to delete
        self._watermark = 0
        self._persisted_watermark = 0
        self._last_persist = 0.0

        self._disk_bytes = 0
        self._pending_bytes = 0
        self._waiting = 0  # appends queued or in a commit
        self._appends = 0
        self._fsyncs = 0  # incremented only on the io thread
        self._rejected_full = 0
        self._duplicates = 0
        self._write_errors = 0
        self._corrupt_reads = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> RecoveryReport:
        """Create the directory, recover the segments, and start the commit task."""
        if self._state != "new":
            raise RuntimeError("Spool.open() may be called once")
        self._io_pool = ThreadPoolExecutor(1, thread_name_prefix="spool-io")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="spool-read")
        try:
            report = await self._io(self._recover)
        except BaseException:
            self._release()
            self._state = "closed"
            raise
        self._last_persist = time.monotonic()
        self._state = "open"
        self._task = asyncio.create_task(self._run(), name=f"spool-commit:{self._dir}")
        if self._doomed:
            self._wake.set()
        return report

    async def close(self) -> None:
        """Let queued appends finish, stop the commit task, persist the watermark. Idempotent."""
        if self._state == "new":
            self._state = "closed"
        if self._state == "closed":
            return
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._state = "closing"
        self._wake.set()
        try:
            if self._task is not None:
                await self._task  # returns once the queue is empty
            if self._watermark > self._persisted_watermark:
                await self._persist_watermark()
        finally:
            self._release()
            self._state = "closed"
            self._ready.set()  # records() iterators see "closed" and end

    def _release(self) -> None:
        for seg in self._segments:
            if seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        for pool in (self._io_pool, self._read_pool):
            if pool is not None:
                pool.shutdown(wait=True)  # both idle by now, or finishing one short read

    async def _io(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, fn, *args)

    # --- recovery (runs on the io thread before the spool is shared) ---------------------------

    def _recover(self) -> RecoveryReport:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._watermark = self._persisted_watermark = self._read_watermark()
        with contextlib.suppress(FileNotFoundError):
            (self._dir / (WATERMARK_NAME + ".tmp")).unlink()

        found = sorted(
            (int(p.name[:20]), p)
            for p in self._dir.iterdir()
            if p.name.endswith(SEGMENT_SUFFIX) and len(p.name) == 24 and p.name[:20].isdigit()
        )
        records = truncated = corrupt = 0
        dir_changed = False
        highest = self._watermark
        for index, (first_id, path) in enumerate(found):
            data = path.read_bytes()
            scan = scan_segment(data, first_id)
            last = index == len(found) - 1
            seg = _Segment(path, first_id, size=len(data))
            if scan.error is not None and last and not scan.valid_after_error:
                truncated += len(data) - scan.end
                log.warning(
                    "%s: torn tail at offset %d (%s): truncating %d bytes",
                    path,
                    scan.end,
                    scan.error,
                    len(data) - scan.end,
                )
                if scan.end == 0:  # the header itself is torn: the segment never held a record
                    path.unlink()
                    dir_changed = True
                    continue
                self._truncate(path, scan.end)
                seg.size = scan.end
            elif scan.error is not None:
                corrupt += 1
                seg.broken = True  # never append after a corrupt record
                log.error(
                    "%s: corrupt record at offset %d (%s); dropping the %d bytes after it",
                    path,
                    scan.end,
                    scan.error,
                    len(data) - scan.end,
                )
            # New ids (and so new segment names) stay above every segment kept, even one
            # whose first record is corrupt.
            highest = max(highest, first_id)
            for record_id, offset, appended_us, key in scan.records:
                self._index(seg, record_id, offset, appended_us, key)
                highest = max(highest, record_id)
            seg.end = scan.end if scan.error is not None else seg.size
            records += len(scan.records)
            self._segments.append(seg)
            self._disk_bytes += seg.size

        unacked = len(self._unacked)
        self._next_id = highest + 1
        if self._segments and not self._segments[-1].broken:
            self._active = self._segments[-1]
            self._active.fd = os.open(self._active.path, os.O_RDWR | os.O_CLOEXEC)
        for seg in self._segments:
            if seg is not self._active:
                self._seal(seg)
        if dir_changed:
            self._fsync_dir()
        return RecoveryReport(len(found), records, unacked, truncated, corrupt)

    def _index(
        self, seg: _Segment, record_id: int, offset: int, appended_us: int, key: str
    ) -> None:
        seg.ids.append(record_id)
        seg.offsets.append(offset)
        seg.stamps.append(appended_us)
        seg.keys.append(key)
        if self._keys.setdefault(key, record_id) != record_id:
            # Only after a failed truncation (see Durability): publish both, JetStream dedups.
            log.warning("key %r stored twice (ids %d, %d)", key, self._keys[key], record_id)
        if record_id > self._watermark:
            seg.unacked += 1
            self._unacked[record_id] = seg
            self._order.append(record_id)
            self._to_yield.append(record_id)

    def _read_watermark(self) -> int:
        path = self._dir / WATERMARK_NAME
        try:
            return decode_watermark(path.read_bytes())
        except FileNotFoundError:
            return 0
        except CorruptRecord as exc:
            log.error("%s: %s; acked records will be yielded again", path, exc)
            return 0

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)  # the cut must be durable before anything is appended after it
            self._fsyncs += 1
        finally:
            os.close(fd)

    def _fsync_dir(self) -> None:
        os.fsync(self._dir_fd)
        self._fsyncs += 1

    # --- append --------------------------------------------------------------------------------

    async def append(self, key: str, payload: bytes) -> int:
        """Store `payload` under the idempotency `key`; return its id once it is durable.

        Raises SpoolFull (bound reached: answer 5.03), SpoolWriteError (the disk failed:
        answer 5.03), ValueError (a key of 0 or > 255 bytes, or a record that could never fit
        max_bytes), SpoolClosed.
        """
        if self._state != "open":
            raise SpoolClosed(f"spool is {self._state}")
        record_id = self._keys.get(key)
        if record_id is not None:
            self._duplicates += 1
            return record_id
        pending = self._inflight.get(key)
        if pending is not None:
            self._duplicates += 1
            return await asyncio.shield(pending.future)

        key_bytes = key.encode("utf-8")
        if type(payload) is not bytes:
            payload = bytes(payload)
        size = RECORD_OVERHEAD_BYTES + len(key_bytes) + len(payload)
        if size + SEGMENT_HEADER_BYTES > self._max_bytes:
            raise ValueError(f"a {size}-byte record can never fit max_bytes={self._max_bytes}")
        # One segment header of slack: a commit may start a new segment.
        needed = self._disk_bytes + self._pending_bytes + size + SEGMENT_HEADER_BYTES
        if self._waiting >= self._max_pending or needed > self._max_bytes:
            self._rejected_full += 1
            raise SpoolFull(
                f"spool full: {self._waiting} appends pending, "
                f"{self._disk_bytes + self._pending_bytes} of {self._max_bytes} bytes used"
            )
        record_id = self._next_id
        self._next_id += 1
        appended_us = time.time_ns() // 1000
        frame = encode_record(record_id, appended_us, key_bytes, payload)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        pending = _Pending(record_id, key, appended_us, payload, frame, future)
        self._queue.append(pending)
        self._inflight[key] = pending
        self._pending_bytes += len(frame)
        self._waiting += 1
        self._wake.set()
        # shield: a caller that gives up must not cancel the commit others share.
        return await asyncio.shield(future)

    def lookup(self, key: str) -> int | None:
        """The id of a durable record with this key still in the spool (acked or not)."""
        return self._keys.get(key)

    # --- the commit task -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            if not (self._queue or self._doomed or self._watermark_due()):
                if self._state != "open":
                    return
                wait_s = self._watermark_wait_s()
                loop = asyncio.get_running_loop()
                timer = None if wait_s is None else loop.call_later(wait_s, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
                continue
            if self._queue:
                if self._commit_delay_s > 0 and self._state == "open":
                    await asyncio.sleep(self._commit_delay_s)  # gather more appends
                batch, self._queue = self._queue, []
                try:
                    await self._commit(batch)
                except Exception as exc:  # a bug, not I/O: fail the appends rather than hang them
                    log.exception("spool commit failed")
                    self._fail([p for p in batch if not p.future.done()], exc)
            if self._doomed:
                await self._delete_doomed()
            if self._watermark_due():
                await self._persist_watermark()

    async def _commit(self, batch: list[_Pending]) -> None:
        """Write the batch, one pwrite + one fdatasync per segment it touches."""
        i = 0
        while i < len(batch):
            seg = self._active
            has_records = seg is not None and seg.size > SEGMENT_HEADER_BYTES
            if (
                seg is None
                or seg.broken
                or (has_records and seg.size + len(batch[i].frame) > self._segment_bytes)
            ):
                try:
                    seg = await self._roll(batch[i].record_id)
                except OSError as exc:
                    self._fail(batch[i:], exc)
                    return
            end, j = seg.size + len(batch[i].frame), i + 1
            while j < len(batch) and end + len(batch[j].frame) <= self._segment_bytes:
                end += len(batch[j].frame)
                j += 1
            data = b"".join(p.frame for p in batch[i:j])
            try:
                await self._io(self._write_io, seg.fd, seg.size, data)
            except OSError as exc:
                seg.broken = True
                self._fail(batch[i:], exc)
                return
            self._install(seg, batch[i:j])
            i = j

    def _write_io(self, fd: int, offset: int, data: bytes) -> None:
        try:
            _pwrite_all(fd, data, offset)
            if self._sync:
                os.fdatasync(fd)
                self._fsyncs += 1
        except OSError:
            try:
                os.ftruncate(fd, offset)  # so the failed records do not come back at restart
            except OSError as exc:
                log.error("cannot remove a failed write (fd %d, offset %d): %s", fd, offset, exc)
            raise

    async def _roll(self, first_id: int) -> _Segment:
        seg = await self._io(self._create_segment_io, first_id)
        if self._active is not None:
            self._seal(self._active)
        self._segments.append(seg)
        self._active = seg
        self._disk_bytes += seg.size
        return seg

    def _create_segment_io(self, first_id: int) -> _Segment:
        path = self._dir / segment_name(first_id)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        try:
            _pwrite_all(fd, encode_segment_header(first_id), 0)
            if self._sync:
                os.fdatasync(fd)
                self._fsyncs += 1
                self._fsync_dir()  # the new name must survive a crash with its records
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return _Segment(path, first_id, size=SEGMENT_HEADER_BYTES, fd=fd)

    def _seal(self, seg: _Segment) -> None:
        seg.sealed = True
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        if seg is self._active:
            self._active = None
        if seg.unacked == 0:
            self._doomed.append(seg)

    def _install(self, seg: _Segment, done: list[_Pending]) -> None:
        """The batch is synced: index it, make it visible, resolve its appends."""
        offset = seg.size
        for p in done:
            self._index(seg, p.record_id, offset, p.appended_us, p.key)
            offset += len(p.frame)
            self._inflight.pop(p.key, None)
            if self._cache_bytes + len(p.payload) <= self._cache_bytes_max:
                self._cache[p.record_id] = p.payload
                self._cache_bytes += len(p.payload)
            p.future.set_result(p.record_id)
        written = offset - seg.size
        seg.size = seg.end = offset
        self._disk_bytes += written
        self._pending_bytes -= written
        self._waiting -= len(done)
        self._appends += len(done)
        self._ready.set()

    def _fail(self, failed: list[_Pending], exc: BaseException) -> None:
        self._write_errors += 1
        log.error("spool write failed, %d appends refused: %s", len(failed), exc)
        for p in failed:
            self._inflight.pop(p.key, None)
            self._pending_bytes -= len(p.frame)
            self._waiting -= 1
            error = SpoolWriteError(f"spool write failed: {exc}")
            error.__cause__ = exc
            if not p.future.done():
                p.future.set_exception(error)

    # --- reading and acking --------------------------------------------------------------------

    async def records(self) -> AsyncIterator[Record]:
        """Every unacked durable record, once per Spool instance, in id (= append) order.

        Waits for new records; ends when the spool closes."""
        if self._state == "new":
            raise RuntimeError("Spool.records() before open()")
        while True:
            while not self._to_yield:
                if self._state == "closed":
                    return
                self._ready.clear()
                await self._ready.wait()
            if self._state == "closed":
                return
            record_id = self._to_yield[0]
            seg = self._unacked.get(record_id)
            if seg is None:  # acked before it was yielded
                self._to_yield.popleft()
                continue
            i = bisect_left(seg.ids, record_id)
            payload = self._cache.pop(record_id, None)
            if payload is not None:
                self._cache_bytes -= len(payload)
                self._to_yield.popleft()
                yield Record(record_id, seg.keys[i], payload, seg.stamps[i])
                continue
            for got_id, got in await self._read_run(seg, i):
                # Another iterator, or an ack, may have moved on while we read.
                if not self._to_yield or self._to_yield[0] != got_id:
                    break
                self._to_yield.popleft()
                if got_id not in self._unacked:
                    continue
                if isinstance(got, str):
                    self._corrupt_reads += 1
                    log.error("%s: record %d unreadable (%s); dropped", seg.path, got_id, got)
                    self.ack(got_id)
                    continue
                yield got

    async def _read_run(self, seg: _Segment, i: int) -> list[tuple[int, Record | str]]:
        """Read the uncached records of `seg` from index i on in one pread: each one decoded
        and checked against the index, or the reason it is unreadable."""
        j = i + 1
        while (
            j < len(seg.ids)
            and seg.offsets[j] - seg.offsets[i] < READ_CHUNK_BYTES
            and seg.ids[j] not in self._cache
        ):
            j += 1
        start = seg.offsets[i]
        ends = [*seg.offsets[i + 1 : j], seg.offsets[j] if j < len(seg.ids) else seg.end]
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(
                self._read_pool, _pread, seg.path, start, ends[-1] - start
            )
        except FileNotFoundError:  # deleted meanwhile: all its records were acked
            return []
        except OSError as exc:
            log.error("%s: read failed (%s); retrying in %.1f s", seg.path, exc, READ_RETRY_S)
            await asyncio.sleep(READ_RETRY_S)
            return []
        buf = memoryview(data)
        out: list[tuple[int, Record | str]] = []
        for k, end in zip(range(i, j), ends, strict=True):
            record_id = seg.ids[k]
            try:
                got_id, _us, key, payload_start, got_end = decode_record(
                    buf[: end - start], seg.offsets[k] - start, record_id
                )
                if (got_id, key, got_end) != (record_id, seg.keys[k], end - start):
                    raise CorruptRecord(f"found id {got_id} key {key!r}, not the indexed one")
            except CorruptRecord as exc:
                out.append((record_id, str(exc)))
                continue
            payload = bytes(buf[payload_start:got_end])
            out.append((record_id, Record(record_id, key, payload, seg.stamps[k])))
        return out

    def ack(self, record_id: int) -> None:
        """JetStream has this record. Unknown or already acked ids are ignored."""
        seg = self._unacked.pop(record_id, None)
        if seg is None:
            return
        payload = self._cache.pop(record_id, None)
        if payload is not None:
            self._cache_bytes -= len(payload)
        # The watermark: every id up to it is acked (ids that failed to write never existed).
        before = self._watermark
        while self._order and self._order[0] not in self._unacked:
            self._watermark = self._order.popleft()
        seg.unacked -= 1
        doomed = seg.unacked == 0 and seg.sealed
        if doomed:
            self._doomed.append(seg)
        # Wake the commit task only when it has something new to do: a segment to delete,
        # or a watermark to persist where it was waiting without a deadline (it was
        # persisted); once it has a deadline it wakes by itself.
        first_move = before == self._persisted_watermark and self._watermark > before
        if self._state == "open" and (doomed or first_move):
            self._wake.set()

    async def _delete_doomed(self) -> None:
        doomed, self._doomed = self._doomed, []
        try:
            deleted = await self._io(self._delete_io, doomed)
        except OSError as exc:  # the directory fsync: the unlinks happened
            log.error("spool directory fsync failed: %s", exc)
            deleted = doomed
        for seg in deleted:
            self._segments.remove(seg)
            self._disk_bytes -= seg.size
            for key, record_id in zip(seg.keys, seg.ids, strict=True):
                if self._keys.get(key) == record_id:
                    del self._keys[key]

    def _delete_io(self, doomed: list[_Segment]) -> list[_Segment]:
        deleted = []
        for seg in doomed:
            try:
                seg.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # kept; a restart retries (its records are acked)
                log.error("%s: cannot delete: %s", seg.path, exc)
                continue
            deleted.append(seg)
        if deleted and self._sync:
            self._fsync_dir()
        return deleted

    def _watermark_due(self) -> bool:
        return (
            self._watermark > self._persisted_watermark
            and time.monotonic() - self._last_persist >= WATERMARK_PERSIST_INTERVAL_S
        )

    def _watermark_wait_s(self) -> float | None:
        if self._watermark <= self._persisted_watermark:
            return None
        return max(0.0, WATERMARK_PERSIST_INTERVAL_S - (time.monotonic() - self._last_persist))

    async def _persist_watermark(self) -> None:
        watermark = self._watermark
        self._last_persist = time.monotonic()
        try:
            await self._io(self._write_watermark_io, watermark)
        except OSError as exc:  # retried at the next interval; a stale one only re-yields
            log.error("cannot persist the ack watermark: %s", exc)
            return
        self._persisted_watermark = watermark

    def _write_watermark_io(self, watermark: int) -> None:
        tmp = self._dir / (WATERMARK_NAME + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _pwrite_all(fd, encode_watermark(watermark), 0)
            if self._sync:
                os.fsync(fd)
                self._fsyncs += 1
        finally:
            os.close(fd)
        os.replace(tmp, self._dir / WATERMARK_NAME)
        if self._sync:
            self._fsync_dir()

    # --- observation -----------------------------------------------------------------------------

    def stats(self) -> SpoolStats:
        oldest = None
        if self._order:  # ack() keeps an acked id off the front
            seg = self._unacked[self._order[0]]
            oldest = seg.stamps[bisect_left(seg.ids, self._order[0])]
        return SpoolStats(
            bytes=self._disk_bytes,
            unacked=len(self._unacked),
            oldest_unacked_us=oldest,
            segments=len(self._segments),
            appends=self._appends,
            fsyncs=self._fsyncs,
            rejected_full=self._rejected_full,
            pending=self._waiting,
            duplicates=self._duplicates,
            write_errors=self._write_errors,
            corrupt_reads=self._corrupt_reads,
        )


def _pread(path: Path, offset: int, size: int) -> bytes:
    """Read on a file descriptor of our own: the writer's may be closed under us."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                raise OSError(f"{path}: short read at offset {offset}")
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
