"""Boot counter and release checkpoints: a two-sector log of state snapshots on raw NOR.

Format and invariants: RING.md, "Meta log". In short: every entry is a complete snapshot
(n, boot, mark) with a CRC-32; the valid entry with the highest n is the state. Entries are
only ever appended; a sector is erased only when it is the inactive one (the state lives in
the other), so a cut anywhere leaves the previous snapshot readable.
"""

import struct
from binascii import crc32

from micropython import const

_ENTRY = const(32)
_MAGIC = const(0x314D5452)  # b"RTM1" little-endian
_FMT = "<IIIII"  # magic, n, boot, mark_boot, mark_seq; then 8 bytes 0xFF; then crc32
_CRC_AT = const(28)
_TRIES = const(4)  # slots tried before a write gives up (each failure burns one slot)


class MetaError(Exception):
    pass


class Meta:
    def __init__(self, flash, first_sector):
        if first_sector < 0 or first_sector + 2 > flash.sector_count:
            raise ValueError("meta log needs two sectors inside the flash")
        self._f = flash
        self._ss = flash.sector_size
        self._base = first_sector
        self._slots = self._ss // _ENTRY
        self._e = bytearray(_ENTRY)
        self._r = bytearray(_ENTRY)
        self._crcv = memoryview(self._e)[:_CRC_AT]
        self._rcrcv = memoryview(self._r)[:_CRC_AT]
        self.n = 0  # snapshot number of the current state; 0 = nothing ever written
        self.boot = 0
        self.mark_boot = 0  # every record with identity <= mark is released
        self.mark_seq = 0
        self._act = 0  # sector (0 or 1) holding the current state
        self._next = -1  # next blank slot in the active sector; -1 = unknown (load() first)
        self.writes = 0

    def _addr(self, sec, slot):
        return (self._base + sec) * self._ss + slot * _ENTRY

    def load(self):
        """Scan both sectors; adopt the valid snapshot with the highest n. Never writes."""
        r = self._r
        best_n = 0
        last_used = [-1, -1]
        for sec in (0, 1):
            for slot in range(self._slots):
                self._f.read(self._addr(sec, slot), r)
                blank = True
                for i in range(_ENTRY):
                    if r[i] != 0xFF:
                        blank = False
                        break
                if blank:
                    continue
                last_used[sec] = slot
                if not self._valid(r):
                    continue  # torn or stale-and-damaged entry: ignored, its slot stays burnt
                _, n, boot, mb, ms = struct.unpack_from(_FMT, r, 0)
                if n > best_n:
                    best_n = n
                    self.n = n
                    self.boot = boot
                    self.mark_boot = mb
                    self.mark_seq = ms
                    self._act = sec
        if best_n == 0:
            self.n = 0
            self.boot = 0
            self.mark_boot = 0
            self.mark_seq = 0
            self._act = 0
            # Nothing valid anywhere: start on sector 0, erased first unless already blank.
            self._next = 0 if last_used[0] < 0 else self._slots
        else:
            self._next = last_used[self._act] + 1

    def _valid(self, r):
        if r[0] != 0x52 or r[1] != 0x54 or r[2] != 0x4D or r[3] != 0x31:
            return False
        for i in range(20, _CRC_AT):
            if r[i] != 0xFF:
                return False
        want = r[28] | (r[29] << 8) | (r[30] << 16) | (r[31] << 24)
        return crc32(self._rcrcv) == want

    def _write(self, boot, mb, ms):
        if self._next < 0:
            raise MetaError("meta log not loaded")
        e = self._e
        n = self.n + 1
        for _ in range(_TRIES):
            if self._next >= self._slots:
                # The active sector is full: the state lives there, so erasing the other
                # one loses nothing even if the erase is cut half way.
                other = 1 - self._act
                try:
                    self._f.erase(self._base + other)
                except OSError:
                    raise MetaError("meta sector erase failed") from None
                self._act = other
                self._next = 0
            addr = self._addr(self._act, self._next)
            self._next += 1  # a failed slot is never reused: it may hold partial bits
            for i in range(_ENTRY):
                e[i] = 0xFF
            struct.pack_into(_FMT, e, 0, _MAGIC, n, boot, mb, ms)
            struct.pack_into("<I", e, _CRC_AT, crc32(self._crcv))
            try:
                self._f.prog(addr, e)
            except OSError:
                continue
            self._f.read(addr, self._r)
            if self._r != e:
                continue
            self.n = n
            self.boot = boot
            self.mark_boot = mb
            self.mark_seq = ms
            self.writes += 1
            return
        raise MetaError("meta log write failed")

    def new_boot(self, floor=0):
        """Durably take the next boot number (greater than the stored one and than `floor`)
        and return it. Records may carry it only after this returns."""
        b = (self.boot if self.boot > floor else floor) + 1
        self._write(b, self.mark_boot, self.mark_seq)
        return b

    def mark(self, boot, seq):
        """Durably record that every record with identity <= (boot, seq) is released."""
        if boot < self.mark_boot or (boot == self.mark_boot and seq <= self.mark_seq):
            return
        self._write(self.boot, boot, seq)
