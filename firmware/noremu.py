"""File-backed NOR flash emulator for the unix port.

A fake only because a flash chip cannot exist on the test machine, so it fails the way
NOR fails:

- erased bytes read 0xFF; `prog` ANDs data into the array (it only clears bits, 1->0;
  programming a 1 over a 0 leaves the 0); `erase` works on whole sectors only;
- every program and erase is counted, per sector for erases (wear);
- power can be cut at the N-th operation (program or erase, counted from 0). The cut
  operation is left partly done (see `tear_prog` / `tear_erase`), `PowerCut` is raised and
  every later operation raises `PowerCut` too, until `revive()` (the next boot);
- bad blocks: per sector, a program or an erase can raise `OSError(EIO)` (after doing
  nothing) or silently do nothing.

The interface is the one the ring uses on every board (see hal_esp32 / hal_rp2):
`sector_size`, `sector_count`, `read(addr, buf)`, `prog(addr, buf)`, `erase(sector)`;
lengths are `len(buf)`. Nothing here allocates per operation: the image lives in a file
and bytes move through one preallocated scratch buffer.
"""

from micropython import const

_CHUNK = const(256)

# Bad-block flags, one byte per sector in `NorFlash.bad`.
BAD_PROG_RAISE = const(1)
BAD_PROG_SILENT = const(2)
BAD_ERASE_RAISE = const(4)
BAD_ERASE_SILENT = const(8)

# Tear shapes for a cut program.
TEAR_PREFIX = const(0)  # bytes [0, k) programmed, byte k partly (some bits), rest untouched
TEAR_SCATTER = const(1)  # each byte independently: programmed, partly programmed or untouched

_EIO = const(5)


class PowerCut(Exception):
    """Power was cut during (or before) a flash operation. Not an OSError on purpose:
    storage code catches OSError for bad blocks and must never swallow a power cut."""


class Rng:
    """xorshift32: deterministic, allocation-free on 64-bit ports, same sequence everywhere."""

    def __init__(self, seed):
        self.s = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n


class NorFlash:
    def __init__(self, path, sector_size=4096, sector_count=16, fresh=False):
        if sector_size % _CHUNK or sector_size <= 0 or sector_count <= 0:
            raise ValueError("sector_size must be a positive multiple of 256")
        self.path = path
        self.sector_size = sector_size
        self.sector_count = sector_count
        self.size = sector_size * sector_count
        self._buf = bytearray(_CHUNK)
        self._ff = b"\xff" * _CHUNK
        self.erases = [0] * sector_count  # erase operations per sector (wear)
        self.bad = bytearray(sector_count)  # BAD_* flags per sector
        self.rng = Rng(1)  # drives the shape of torn writes
        self.tear = TEAR_PREFIX
        self.erase_tear = -1  # shape of a cut erase (see tear_erase); -1 = drawn per cut
        self.cut_at = -1  # operation index to cut at; -1 = never
        self.on_op = None  # harness hook: on_op(kind, addr_or_sector, buf), before the op
        self.dead = False
        self.reset_counters()
        self._f = self._open(fresh)

    def reset_counters(self):
        self.ops = 0  # programs + erases issued (including failed and cut ones)
        self.prog_ops = 0
        self.prog_bytes = 0
        self.erase_ops = 0
        self.read_ops = 0

    def _open(self, fresh):
        try:
            f = open(self.path, "r+b")
            f.seek(0, 2)
            ok = f.tell() == self.size
        except OSError:
            f = None
            ok = False
        if f is not None and ok and not fresh:
            return f
        if f is not None:
            f.close()
        # A factory-fresh chip reads erased everywhere.
        f = open(self.path, "w+b")
        for _ in range(self.size // _CHUNK):
            f.write(self._ff)
        f.flush()
        return f

    def close(self):
        self._f.close()

    def revive(self):
        """Power comes back: the chip works again (the image keeps whatever the cut left)."""
        self.dead = False
        self.cut_at = -1

    def _check(self, addr, n):
        if addr < 0 or n < 0 or addr + n > self.size:
            raise ValueError("flash address out of range")

    def read(self, addr, buf):
        if self.dead:
            raise PowerCut()
        n = len(buf)
        self._check(addr, n)
        self.read_ops += 1
        f = self._f
        f.seek(addr)
        f.readinto(buf)

    # A program or an erase passes through here first: counting, the harness hook, the cut.
    def _begin(self, kind, where, buf):
        if self.dead:
            raise PowerCut()
        if self.on_op is not None:
            self.on_op(kind, where, buf)
        op = self.ops
        self.ops = op + 1
        return op == self.cut_at

    def prog(self, addr, buf):
        n = len(buf)
        self._check(addr, n)
        cut = self._begin(0, addr, buf)
        self.prog_ops += 1
        self.prog_bytes += n
        if cut:
            self.tear_prog(addr, buf)
            self.dead = True
            raise PowerCut()
        # A program that spans sectors fails if any of them is bad; real chips work per page.
        s = addr // self.sector_size
        e = (addr + n - 1) // self.sector_size if n else s
        flags = 0
        while s <= e:
            flags |= self.bad[s]
            s += 1
        if flags & BAD_PROG_RAISE:
            raise OSError(_EIO)
        if flags & BAD_PROG_SILENT:
            return
        self._and(addr, buf, 0, n, None)

    def erase(self, sector):
        if not 0 <= sector < self.sector_count:
            raise ValueError("sector out of range")
        cut = self._begin(1, sector, None)
        self.erase_ops += 1
        self.erases[sector] += 1
        if cut:
            self.tear_erase(sector)
            self.dead = True
            raise PowerCut()
        flags = self.bad[sector]
        if flags & BAD_ERASE_RAISE:
            raise OSError(_EIO)
        if flags & BAD_ERASE_SILENT:
            return
        f = self._f
        f.seek(sector * self.sector_size)
        for _ in range(self.sector_size // _CHUNK):
            f.write(self._ff)

    # AND buf[i0:i1] into the image at addr + i0 - (applied through the optional rng mask).
    def _and(self, addr, buf, i0, i1, rng):
        f = self._f
        b = self._buf
        i = i0
        while i < i1:
            k = min(_CHUNK, i1 - i)
            f.seek(addr + i)
            f.readinto(b)
            for j in range(k):
                v = buf[i + j]
                if rng is not None:
                    r = rng.below(3)
                    if r == 0:
                        continue  # this byte untouched
                    if r == 1:
                        # partly programmed: only some of the bits that should clear did
                        v |= rng.next() & 0xFF
                b[j] &= v
            f.seek(addr + i)
            f.write(b, 0, k)
            i += k

    def tear_prog(self, addr, buf):
        """Leave a program of `buf` at `addr` partly done, in the shape set by `self.tear`.
        Only bits the full program would clear can clear: a torn program is always a
        subset of the complete one."""
        n = len(buf)
        self._check(addr, n)
        rng = self.rng
        if self.tear == TEAR_SCATTER:
            self._and(addr, buf, 0, n, rng)
            return
        k = rng.below(n + 1)  # bytes fully programmed; k == n is "done but not confirmed"
        self._and(addr, buf, 0, k, None)
        if k < n:
            b = self._buf
            f = self._f
            f.seek(addr + k)
            f.readinto(b)
            b[0] &= buf[k] | (rng.next() & 0xFF)
            f.seek(addr + k)
            f.write(b, 0, 1)

    def tear_erase(self, sector):
        """Leave `sector` partly erased. Shapes, drawn from the rng: nothing erased yet;
        every byte partly erased (some bits set); bytes erased at random; only a suffix
        erased (old header and first records survive, later ones are gone); only a prefix
        erased (header gone, later records survive)."""
        rng = self.rng
        f = self._f
        b = self._buf
        ss = self.sector_size
        base = sector * ss
        mode = rng.below(5) if self.erase_tear < 0 else self.erase_tear
        cut = rng.below(ss)
        for c in range(ss // _CHUNK):
            f.seek(base + c * _CHUNK)
            f.readinto(b)
            for j in range(_CHUNK):
                if mode == 0:
                    break
                if mode == 1:
                    b[j] |= rng.next() & 0xFF
                elif mode == 2:
                    r = rng.below(64)
                    if r < 40:
                        b[j] = 0xFF
                    elif r < 44:
                        b[j] |= rng.next() & 0xFF
                elif (mode == 3) == (c * _CHUNK + j >= cut):
                    b[j] = 0xFF
            f.seek(base + c * _CHUNK)
            f.write(b)

    def copy_to(self, other):
        """Copy this image into another emulator of the same geometry (for snapshots)."""
        if other.size != self.size:
            raise ValueError("geometry differs")
        src = self._f
        dst = other._f
        b = self._buf
        src.seek(0)
        dst.seek(0)
        for _ in range(self.size // _CHUNK):
            src.readinto(b)
            dst.write(b)
