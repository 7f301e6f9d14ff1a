"""The NOR emulator fails like NOR: erased reads 0xFF, programs only clear bits, erases are
whole sectors, everything is counted, cuts leave partial writes, bad blocks misbehave."""

import mptest
from mptest import check
from noremu import (
    BAD_ERASE_RAISE,
    BAD_ERASE_SILENT,
    BAD_PROG_RAISE,
    BAD_PROG_SILENT,
    TEAR_SCATTER,
    NorFlash,
    PowerCut,
)

SS = 1024


def _flash(fresh=True):
    return NorFlash(mptest.tmpdir() + "/nor.img", SS, 4, fresh=fresh)


def _read(f, addr, n):
    b = bytearray(n)
    f.read(addr, b)
    return b


def test_fresh_flash_reads_erased():
    f = _flash()
    check(_read(f, 0, 16) == b"\xff" * 16, "fresh flash not erased")
    check(_read(f, 4 * SS - 16, 16) == b"\xff" * 16, "end of flash not erased")


def test_program_only_clears_bits():
    f = _flash()
    f.prog(10, b"\x0f\xf0")
    f.prog(10, b"\xf3\x3f")  # 1s over 0s stay 0; only new 0s appear
    check(_read(f, 10, 2) == b"\x03\x30", "program did not AND", _read(f, 10, 2))
    check(_read(f, 9, 1) == b"\xff" and _read(f, 12, 1) == b"\xff", "neighbours touched")
    check(f.prog_ops == 2 and f.prog_bytes == 4 and f.ops == 2, "program not counted")


def test_erase_is_whole_sector_and_counted():
    f = _flash()
    f.prog(SS - 1, b"\x00\x00")  # last byte of sector 0, first of sector 1
    f.erase(0)
    check(_read(f, SS - 1, 1) == b"\xff", "erase left data in its sector")
    check(_read(f, SS, 1) == b"\x00", "erase reached the next sector")
    check(f.erases[0] == 1 and f.erases[1] == 0 and f.erase_ops == 1, "erase not counted")


def test_out_of_range_is_refused():
    f = _flash()
    for fn in (lambda: f.prog(4 * SS - 1, b"ab"), lambda: f.read(-1, bytearray(1))):
        try:
            fn()
        except ValueError:
            continue
        raise mptest.Failure("out of range access allowed")
    try:
        f.erase(4)
    except ValueError:
        return
    raise mptest.Failure("erase of a missing sector allowed")


def test_image_is_persistent():
    f = _flash()
    f.prog(100, b"\x12\x34")
    f.close()
    g = _flash(fresh=False)
    check(_read(g, 100, 2) == b"\x12\x34", "image lost when reopened")


def test_cut_program_leaves_a_subset_and_kills_power():
    data = bytes(range(64))
    seen_partial = False
    for tear in (0, TEAR_SCATTER):
        for seed in range(1, 40):
            f = _flash()
            f.tear = tear
            f.rng.s = seed
            f.cut_at = 1
            f.prog(0, b"\xaa")
            try:
                f.prog(100, data)
            except PowerCut:
                pass
            else:
                raise mptest.Failure("no cut at the armed operation")
            try:
                f.read(0, bytearray(1))
            except PowerCut:
                pass
            else:
                raise mptest.Failure("flash still answers after a cut")
            f.revive()
            got = _read(f, 100, 64)
            for i in range(64):
                # every bit is either erased or what the full program would leave
                check(got[i] & data[i] == data[i], "cut program set a bit to 0 wrongly", i)
            if got != data and got != b"\xff" * 64:
                seen_partial = True
    check(seen_partial, "cuts never left a partial program")


def test_cut_erase_leaves_a_partly_erased_sector():
    shapes = 0
    for seed in range(1, 30):
        f = _flash()
        f.prog(SS, b"\x00" * SS)
        f.rng.s = seed
        f.cut_at = f.ops
        try:
            f.erase(1)
        except PowerCut:
            pass
        f.revive()
        got = _read(f, SS, SS)
        erased = 0
        for i in range(SS):
            if got[i] == 0xFF:
                erased += 1
        if 0 < erased < SS:
            shapes += 1
        check(f.erases[1] == 1, "cut erase not counted")
    check(shapes > 5, "cut erases rarely leave a partly erased sector")


def test_bad_blocks_raise_or_do_nothing():
    f = _flash()
    f.bad[1] = BAD_PROG_RAISE
    f.bad[2] = BAD_PROG_SILENT | BAD_ERASE_SILENT
    f.bad[3] = BAD_ERASE_RAISE
    try:
        f.prog(SS, b"\x00")
    except OSError:
        pass
    else:
        raise mptest.Failure("bad block program did not raise")
    check(_read(f, SS, 1) == b"\xff", "failed program changed data")
    f.prog(2 * SS, b"\x00")
    check(_read(f, 2 * SS, 1) == b"\xff", "silent bad program changed data")
    f.prog(3 * SS, b"\x00")
    try:
        f.erase(3)
    except OSError:
        pass
    else:
        raise mptest.Failure("bad block erase did not raise")
    f.bad[2] = 0
    f.prog(2 * SS, b"\x00")
    f.bad[2] = BAD_ERASE_SILENT
    f.erase(2)
    check(_read(f, 2 * SS, 1) == b"\x00", "silent bad erase erased")
    check(f.prog_ops == 4 and f.erase_ops == 2, "failed operations not counted")


mptest.run(
    [
        test_fresh_flash_reads_erased,
        test_program_only_clears_bits,
        test_erase_is_whole_sector_and_counted,
        test_out_of_range_is_refused,
        test_image_is_persistent,
        test_cut_program_leaves_a_subset_and_kills_power,
        test_cut_erase_leaves_a_partly_erased_sector,
        test_bad_blocks_raise_or_do_nothing,
    ]
)
