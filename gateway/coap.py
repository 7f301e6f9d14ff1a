"""The CoAP face of the gateway (aiocoap): `POST /t` and `POST /h`, with bounded Block1.

aiocoap reassembles Block1 (RFC 7959) requests itself, but without a bound on a request's
size or on how many reassemblies are open. A batch is at most MAX_BATCH_BYTES, so a larger
transfer is refused with 4.13 (and Size1, §4) at the first block that overshoots, and at
most `max_reassemblies` may be open at once (5.03 beyond), each expiring after
EXCHANGE_LIFETIME.
"""

from __future__ import annotations

import time
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap import Message, error
from aiocoap.blockwise import ContinueException, IncompleteException, _extract_block_key
from aiocoap.numbers import TransportTuning

from gateway.ingest import Ingest, Reply
from protocol import encode_error
from protocol.constants import (
    CONTENT_FORMAT_CBOR,
    MAX_BATCH_BYTES,
    PATH_HEALTH,
    PATH_TELEMETRY,
    REQUEST_ENTITY_TOO_LARGE,
    SERVICE_UNAVAILABLE,
)

_EXCHANGE_LIFETIME_S = TransportTuning().EXCHANGE_LIFETIME  # RFC 7252 §4.8.2: 247 s


class _Refused(error.RenderableError):
    """A refusal during reassembly, answered with our error body like any other."""

    def __init__(self, code: int, reason: str, max_age_s: int | None = None) -> None:
        self.code, self.reason, self.max_age_s = code, reason, max_age_s

    def to_message(self) -> Message:
        msg = Message(
            code=self.code, payload=encode_error((self.code, self.reason), time.time_ns() // 1000)
        )
        msg.opt.content_format = CONTENT_FORMAT_CBOR
        if self.code == REQUEST_ENTITY_TOO_LARGE:
            msg.opt.size1 = MAX_BATCH_BYTES
        if self.max_age_s is not None:
            msg.opt.max_age = self.max_age_s
        return msg


class BoundedBlock1:
    """Block1 reassembly with a size bound per request and a bound on open reassemblies."""

    def __init__(self, max_bytes: int, max_open: int, retry_after_s: int) -> None:
        self._max_bytes = max_bytes
        self._max_open = max_open
        self._retry_after_s = retry_after_s
        self._open: dict[Any, tuple[Message, float]] = {}

    def feed_and_take(self, req: Message) -> Message:
        block1 = req.opt.block1
        if block1 is None:
            return req
        if (req.opt.size1 or 0) > self._max_bytes:
            raise _Refused(
                REQUEST_ENTITY_TOO_LARGE,
                f"request of {req.opt.size1} bytes, limit {self._max_bytes}",
            )
        key = _extract_block_key(req)
        now = time.monotonic()
        if block1.block_number == 0:
            self._expire(now)
            if key not in self._open and len(self._open) >= self._max_open:
                raise _Refused(
                    SERVICE_UNAVAILABLE, "too many block-wise transfers open", self._retry_after_s
                )
            assembly = req
        else:
            found = self._open.get(key)
            if found is None:
                raise IncompleteException  # 4.08: no transfer open for this block (§2.9.2)
            assembly = found[0]
            if block1.start + len(req.payload) > self._max_bytes:
                del self._open[key]
                raise _Refused(REQUEST_ENTITY_TOO_LARGE, f"request over {self._max_bytes} bytes")
            try:
                assembly._append_request_block(req)
            except ValueError:
                del self._open[key]
                raise IncompleteException from None
        if len(assembly.payload) > self._max_bytes:
            self._open.pop(key, None)
            raise _Refused(REQUEST_ENTITY_TOO_LARGE, f"request over {self._max_bytes} bytes")
        if block1.more:
            self._open[key] = (assembly, now)
            raise ContinueException(block1)
        self._open.pop(key, None)
        return assembly

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, t) in self._open.items() if now - t > _EXCHANGE_LIFETIME_S]:
            del self._open[key]


class _PayloadResource(aiocoap.resource.Resource):
    def __init__(self, ingest: Ingest, block1: BoundedBlock1, health: bool) -> None:
        super().__init__()
        self._block1 = block1  # replaces aiocoap's unbounded reassembly
        self._ingest = ingest
        self._health = health

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return True

    async def render_post(self, request: Message) -> Message:
        handle = self._ingest.health if self._health else self._ingest.telemetry
        reply = await handle(request.payload, request.opt.content_format)
        return _to_message(reply)


def _to_message(reply: Reply) -> Message:
    msg = Message(code=reply.code, payload=reply.body)
    msg.opt.content_format = CONTENT_FORMAT_CBOR
    if reply.max_age_s is not None:
        msg.opt.max_age = reply.max_age_s
    return msg


def build_site(ingest: Ingest, *, max_reassemblies: int, retry_after_s: int) -> Any:
    site = aiocoap.resource.Site()
    for path, health in ((PATH_TELEMETRY, False), (PATH_HEALTH, True)):
        block1 = BoundedBlock1(MAX_BATCH_BYTES, max_reassemblies, retry_after_s)
        site.add_resource([path], _PayloadResource(ingest, block1, health))
    return site
