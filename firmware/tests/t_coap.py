"""coap.Client's messages: request bytes (checked against aiocoap's encoder), Block1
option values (RFC 7959), and parsing of responses (RFC 7252's examples, Max-Age, Block1,
Size1, and what must be refused or ignored)."""

import coap
import mptest
from coapsrv import client
from mptest import check

# coap._classify's results (private consts are not module attributes in MicroPython)
_NOTHING = 0
_EMPTY_ACK = 1
_RESPONSE = 2
_RESET = 3


def _hex(b):
    return "".join(f"{x:02x}" for x in b)


# --- encoding ----------------------------------------------------------------------------

# (Block1 value or -1, Size1 or -1, path, payload, bytes from aiocoap 0.4.17's
# Message.encode() for MID 0x1234, token 01020304, the same options and payload)
_REQUESTS = (
    (-1, -1, b"t", b"\xa1\x00\x01", "4402123401020304b174113cffa10001"),
    (0x1E, -1, b"t", b"\xa1\x00\x01", "4402123401020304b174113cd1021effa10001"),
    (0x0E, 2000, b"t", b"\xa1\x00\x01", "4402123401020304b174113cd1020ed21407d0ffa10001"),
    (0x106, -1, b"h", b"xxx", "4402123401020304b168113cd2020106ff787878"),
)


def test_request_bytes():
    c = client()
    for b1, size1, path, payload, want in _REQUESTS:
        c._mid = 0x1233  # _build takes the next MID
        n = c._build(path, b1, size1, memoryview(payload), 0, len(payload))
        got = bytearray(c._tx[:n])
        check(bytes(got[4:8]) == bytes(c._tok), "token in the message is not the one kept")
        got[4:8] = b"\x01\x02\x03\x04"  # the token is random; compare the rest
        check(_hex(got) == want, "encoded", _hex(got), "want", want)


def test_block1_option_values():
    # RFC 7959 §2.2: NUM << 4 | M << 3 | SZX in 0..3 bytes, shortest form
    buf = bytearray(8)
    cases = (
        ((0, 0, 0), "d00e"),  # NUM 0, M 0, SZX 0: 0 is the empty value
        ((0, 1, 6), "d10e0e"),
        ((1, 0, 6), "d10e16"),
        ((2, 1, 2), "d10e2a"),  # RFC 7959 §3.2's "2/1/128"
        ((16, 1, 6), "d20e010e"),
        ((4096, 0, 2), "d30e010002"),
    )
    for (num, m, szx), want in cases:
        v = (num << 4) | (m << 3) | szx
        n = coap._put_uint_opt(buf, 0, 27, v)
        # header: delta 27 = 13 + 14, so d + length nibble, extension 0x0e
        check(_hex(buf[:n]) == want, (num, m, szx), _hex(buf[:n]), want)


# --- parsing -----------------------------------------------------------------------------


def _feed(c, data, mid=0x7D34, tok=b"\x01\x02\x03\x04"):
    c._cur = mid
    c._tok[:] = tok
    c._rx[: len(data)] = data
    return c._classify(len(data))


def test_parse_rfc7252_examples():
    c = client()
    # Appendix A, Figure 16: CON [0x7d34] GET /temperature, then ACK [0x7d34] 2.05 "22.3 C"
    # (with our 4-byte token in place of the figure's 0-byte one)
    got = _feed(c, bytes.fromhex("64457d3401020304ff32322e332043"))
    check(got == _RESPONSE and c.code == 0x45, got, c.code)
    check(bytes(c.payload()) == b"22.3 C", c.payload())
    check(not c.max_age_present and c.max_age == 60, "Max-Age default is 60 s")
    # §2.2 Figure 5 separate response: empty ACK [0x7a10], then CON [0x23bb] 2.05 "22.5 C"
    got = _feed(c, bytes.fromhex("60007a10"), mid=0x7A10)
    check(got == _EMPTY_ACK, "empty ACK not seen", got)
    got = _feed(c, bytes.fromhex("444523bb01020304ff32322e352043"), mid=-1)
    check(got == _RESPONSE and bytes(c.payload()) == b"22.5 C", got)
    check(c._last_con == 0x23BB, "separate response not remembered for its ACK")
    # the same CON again (our ACK was lost): not a response now, but ACKed again
    c._tok[:] = b"\x09\x09\x09\x09"
    c._rx[:15] = bytes.fromhex("444523bb01020304ff32322e352043")
    check(c._classify(15) == _NOTHING, "duplicate taken as a response")
    # RST for our MID
    check(_feed(c, bytes.fromhex("70007d34")) == _RESET, "RST not seen")
    check(_feed(c, bytes.fromhex("70007d35")) == _NOTHING, "RST of another MID taken")


def test_parse_max_age_block1_size1():
    c = client()
    # 5.03 with Max-Age 30, 3600, 0 (aiocoap's encodings)
    for hexmsg, age in (
        ("64a37d3401020304d1011effa0", 30),
        ("64a37d3401020304d2010e10ffa0", 3600),
        ("64a37d3401020304d001ffa0", 0),
    ):
        check(_feed(c, bytes.fromhex(hexmsg)) == _RESPONSE, hexmsg)
        check(c.code == coap.SERVICE_UNAVAILABLE, c.code)
        check(c.max_age_present and c.max_age == age, hexmsg, c.max_age)
    # 4.13 with Block1 0/0/256 and Size1 16384
    check(_feed(c, bytes.fromhex("648d7d3401020304d10e04d2144000")) == _RESPONSE, "4.13")
    check(c.code == coap.REQUEST_ENTITY_TOO_LARGE and c.size1 == 16384, c.code, c.size1)
    check(c.block1 == 0x04 and len(c.payload()) == 0, c.block1)
    # 2.31 with Block1 0/1/512
    check(_feed(c, bytes.fromhex("645f7d3401020304d10e0d")) == _RESPONSE, "2.31")
    check(c.code == coap.CONTINUE and c.block1 == 0x0D and c.size1 == -1, c.block1)


def test_parse_refuses_what_is_not_the_answer():
    c = client()
    good = "64447d3401020304ffa0"
    check(_feed(c, bytes.fromhex(good)) == _RESPONSE, "good")
    c.code = 0
    cases = (
        ("64447d3501020304ffa0", "ACK of another MID (late)"),
        ("64447d3401020305ffa0", "wrong token"),
        ("63447d34010203ffa0", "shorter token"),
        ("a4447d3401020304ffa0", "version 2"),
        ("69447d3401020304", "TKL 9"),
        ("64447d3401020304ff", "payload marker, no payload"),
        ("64447d3401020304f1", "option delta 15"),
        ("64447d34010203041f", "option length 15"),
        ("64447d3401020304d5", "option extension missing"),
        ("64447d3401020304b3aa", "option longer than the message"),
        ("64447d340102030471aa", "unknown critical option 7 (Uri-Port)"),
        ("64017d3401020304", "a request (GET) in an ACK"),
        ("6000", "3 bytes"),
        ("60007d3400", "empty ACK with a byte more"),
    )
    for h, what in cases:
        got = _feed(c, bytes.fromhex(h))
        check(got == _NOTHING, what, "was taken:", got)
    check(c.code == 0, "a refused message changed the response fields")
    # elective unknown options are skipped (ETag 4, Location-Path 8)
    check(_feed(c, bytes.fromhex("64447d340102030441aa41bbffa0")) == _RESPONSE, "elective")


mptest.run(
    [
        test_request_bytes,
        test_block1_option_values,
        test_parse_rfc7252_examples,
        test_parse_max_age_block1_size1,
        test_parse_refuses_what_is_not_the_answer,
    ]
)
