"""The spool's on-disk format: pure functions over bytes, no I/O.

On-disk format, version 1 (all integers little-endian)
=======================================================

The spool directory holds segment files, the ack watermark file, and nothing else we read.

Segment file `<first id, 20 decimal digits>.seg` (names sort in id order), append-only:

    offset size  field
    0      4     magic b"RTSG"
    4      2     format version, u16 = 1
    6      2     reserved, u16 = 0
    8      8     first record id, u64 (must equal the file name)
    16     4     CRC-32C of bytes 0..16, u32
    20     ...   records, back to back, no padding

Record (25 bytes + key + payload):

    offset size  field
    0      4     CRC-32C, u32, of every byte of the record after this field (offset 4 to end),
                 so the length is covered too
    4      4     length, u32: bytes after this field = 17 + key length + payload length
    8      8     record id, u64; strictly greater than the previous record's id in the file
                 (ids of appends that failed to write are never reused, so gaps can occur)
    16     8     appended_us, i64: wall clock at append, microseconds since the Unix epoch
    24     1     key length k, u8, 1..255
    25     k     key, UTF-8 (the idempotency key, "<device>:<boot>:<seq>")
    25+k   ...   payload, opaque bytes (the device batch)

A record is valid when the length fits in the file, the CRC matches, the key length fits in
the length, the key decodes, and the id is above the previous one. A zero-filled region fails
all of these (length 0 is below the 18-byte minimum), so a torn write is never read as a
record.

Ack watermark file `ack.wm` (20 bytes), replaced atomically (write `ack.wm.tmp`, fsync,
rename, fsync the directory):

    0 magic b"RTWM" | 4 version u16 = 1 | 6 reserved u16 = 0 | 8 watermark u64 |
    16 CRC-32C of bytes 0..16, u32

The watermark W means every record with id <= W is acked. It is written at most once per
WATERMARK_PERSIST_INTERVAL_S and at close(). A missing or corrupt file reads as 0 (logged):
records are then yielded again, never lost.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import native

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"RTSG"
WATERMARK_MAGIC = b"RTWM"
SEGMENT_SUFFIX = ".seg"
WATERMARK_NAME = "ack.wm"
MAX_KEY_BYTES = 255

_SEG_HEADER = struct.Struct("<4sHHQI")  # magic, version, reserved, first id, crc
_WATERMARK = struct.Struct("<4sHHQI")  # magic, version, reserved, watermark, crc
_REC_HEAD = struct.Struct("<IIQqB")  # crc, length, id, appended_us, key length
_REC_BODY = struct.Struct("<IQqB")  # the head after the crc: what the crc covers first
_CRC = struct.Struct("<I")
SEGMENT_HEADER_BYTES = _SEG_HEADER.size  # 20
RECORD_OVERHEAD_BYTES = _REC_HEAD.size  # 25
_LENGTH_END = 8  # the length counts the bytes after offset 8
_MIN_LENGTH = _REC_HEAD.size - _LENGTH_END + 1  # 17 fixed bytes + a key of at least 1 byte


class CorruptRecord(ValueError):
    """Bytes that are not a valid record (torn, zero-filled or corrupted)."""


def encode_segment_header(first_id: int) -> bytes:
    head = struct.pack("<4sHHQ", SEGMENT_MAGIC, FORMAT_VERSION, 0, first_id)
    return head + _CRC.pack(native.crc32c(head))


def encode_record(record_id: int, appended_us: int, key: bytes, payload: bytes) -> bytes:
    """One framed record (see the module docstring)."""
    if not 1 <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"key must be 1..{MAX_KEY_BYTES} UTF-8 bytes, got {len(key)}")
    length = _MIN_LENGTH - 1 + len(key) + len(payload)
    if length > 0xFFFFFFFF:
        raise ValueError("record too large for the u32 length field")
    covered = b"".join((_REC_BODY.pack(length, record_id, appended_us, len(key)), key, payload))
    return _CRC.pack(native.crc32c(covered)) + covered


def decode_record(buf: memoryview, offset: int, min_id: int) -> tuple[int, int, str, int, int]:
    """Validate the record at `offset`: (id, appended_us, key, payload_start, end).

    Raises CorruptRecord when the bytes there are not a whole valid record with id >= min_id.
    """
    if len(buf) - offset < _REC_HEAD.size:
        raise CorruptRecord("short record header")
    crc, length, record_id, appended_us, key_len = _REC_HEAD.unpack_from(buf, offset)
    end = offset + _LENGTH_END + length
    if length < _MIN_LENGTH or end > len(buf):
        raise CorruptRecord(f"length {length} does not fit")
    if native.crc32c(buf[offset + 4 : end]) != crc:
        raise CorruptRecord("CRC mismatch")
    key_start = offset + _REC_HEAD.size
    if key_len == 0 or key_start + key_len > end:
        raise CorruptRecord(f"key length {key_len} does not fit")
    if record_id < min_id:
        raise CorruptRecord(f"id {record_id} out of order (expected >= {min_id})")
    try:
        key = str(buf[key_start : key_start + key_len], "utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRecord("key is not UTF-8") from exc
    return record_id, appended_us, key, key_start + key_len, end


@dataclass(slots=True)
class SegmentScan:
    """What scan_segment found: valid records, where they end, and why the scan stopped."""

    records: list[tuple[int, int, int, str]]  # (id, offset, appended_us, key)
    end: int  # offset after the last valid record (0 if the header is bad)
    error: str | None  # None when the valid records reach the end of the file
    valid_after_error: bool = False  # a valid record follows the bad one: corruption, not a tear


def scan_segment(data: bytes, first_id: int) -> SegmentScan:
    """Validate a whole segment file's bytes."""
    buf = memoryview(data)
    if len(buf) < _SEG_HEADER.size:
        return SegmentScan([], 0, "short segment header")
    magic, version, _reserved, header_id, crc = _SEG_HEADER.unpack_from(buf)
    if native.crc32c(buf[:16]) != crc or magic != SEGMENT_MAGIC:
        return SegmentScan([], 0, "bad segment header")
    if version != FORMAT_VERSION or header_id != first_id:
        return SegmentScan([], 0, f"segment version {version}, first id {header_id}")
    records: list[tuple[int, int, int, str]] = []
    offset, min_id = _SEG_HEADER.size, first_id
    while offset < len(buf):
        try:
            record_id, appended_us, key, _payload, end = decode_record(buf, offset, min_id)
        except CorruptRecord as exc:
            return SegmentScan(records, offset, str(exc), _valid_follows(buf, offset, min_id))
        records.append((record_id, offset, appended_us, key))
        offset, min_id = end, record_id + 1
    return SegmentScan(records, offset, None)


def _valid_follows(buf: memoryview, offset: int, min_id: int) -> bool:
    """Whether a valid record sits where the (invalid) record at `offset` says it ends.

    A torn tail has nothing valid after it; a flipped bit inside a record leaves its length,
    and so the next record, intact. The CRC makes a false positive negligible."""
    if len(buf) - offset < _REC_HEAD.size:
        return False
    length = _CRC.unpack_from(buf, offset + 4)[0]
    try:
        decode_record(buf, offset + _LENGTH_END + length, min_id + 1)
    except CorruptRecord:
        return False
    return True


def encode_watermark(watermark: int) -> bytes:
    head = struct.pack("<4sHHQ", WATERMARK_MAGIC, FORMAT_VERSION, 0, watermark)
    return head + _CRC.pack(native.crc32c(head))


def decode_watermark(data: bytes) -> int:
    if len(data) != _WATERMARK.size:
        raise CorruptRecord(f"watermark file is {len(data)} bytes")
    magic, version, _reserved, watermark, crc = _WATERMARK.unpack(data)
    if magic != WATERMARK_MAGIC or version != FORMAT_VERSION or native.crc32c(data[:16]) != crc:
        raise CorruptRecord("bad watermark file")
    return watermark


def segment_name(first_id: int) -> str:
    return f"{first_id:020d}{SEGMENT_SUFFIX}"
