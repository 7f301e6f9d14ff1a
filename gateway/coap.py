"""The CoAP face of the gateway (aiocoap): `POST /t` and `POST /h`, with bounded Block1.

aiocoap reassembles Block1 (RFC 7959) requests itself, but without a bound on a request's
size or on how many reassemblies are open. A batch is at most MAX_BATCH_BYTES, so a larger
transfer is refused with 4.13 (and Size1, §4) at the first block that overshoots, and at
most `max_reassemblies` may be open at once (5.03 beyond), each expiring after
EXCHANGE_LIFETIME.

One more bound, and shortcuts on aiocoap's per-request path (see docs/gateway.md,
Performance):

- Message-ID deduplication (RFC 7252 §4.5): aiocoap remembers every request for
  EXCHANGE_LIFETIME (247 s) with one timer each, and keeps the answer together with the
  whole request, payload included: about 4 KiB per request, so memory grows with the
  request rate times 247 s (and so does the garbage collector's work).
  `bound_duplicate_memory` replaces that with a table of at most `max_entries` exchanges
  (oldest forgotten first) holding only the encoded answer. A retransmission whose exchange
  was forgotten is handled again, which the ingest path makes harmless: the batch's key is
  already in the spool, so it is answered 2.04 again and stored once.
- A single-datagram POST to a known path (no Block1, Block2 or Observe: every device batch
  that fits a datagram) goes from aiocoap's token layer straight to the ingest handler
  (`_PlainPosts`), without the per-request Pipe, its event callbacks and the resource
  dispatch: the answer still goes out through aiocoap's MessageManager, which piggybacks
  it on the ACK, or sends it as a separate CON response after an empty ACK when the
  handler takes longer than EMPTY_ACK_DELAY (a spool commit can), and mirrors a NON
  request with a NON answer. Anything else takes aiocoap's own path: `_Router` dispatches
  on the Uri-Path without the copy of every request that `aiocoap.resource.Site` makes,
  `_Context` names each request's task without formatting the request (aiocoap's `repr`
  of a message resolves addresses and interfaces), and a POST skips aiocoap's generic
  render path (Block2 is never needed for our answers, which are small; a request that
  asks for Block2 still takes aiocoap's path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap import Message, error
from aiocoap.blockwise import ContinueException, IncompleteException, _extract_block_key
from aiocoap.message import Direction
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers import TransportTuning
from aiocoap.numbers.codes import INTERNAL_SERVER_ERROR, POST
from aiocoap.numbers.types import CON
from aiocoap.pipe import error_to_message, run_driving_pipe

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

log = logging.getLogger("ringtail.gateway.coap")


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

    @property
    def handler(self) -> Handler:
        return self._ingest.health if self._health else self._ingest.telemetry

    async def render_post(self, request: Message) -> Message:
        reply = await self.handler(request.payload, request.opt.content_format)
        return _to_message(reply)

    async def render_to_pipe(self, pipe: Any) -> None:
        """aiocoap's Resource.render_to_pipe for the common case, a POST that asks for no
        Block2; anything else takes aiocoap's own path. Our answers never need Block2:
        the largest is an error body, its reason cut to MAX_REASON_BYTES."""
        request = pipe.request
        if request.code != aiocoap.POST or request.opt.block2 is not None:
            await super().render_to_pipe(pipe)
            return
        request = self._block1.feed_and_take(request)
        response = await self.render_post(request)
        response.opt.block1 = request.opt.block1
        response.opt.no_response = request.opt.no_response
        pipe.add_response(response, is_last=True)


def _to_message(reply: Reply) -> Message:
    msg = Message(code=reply.code, payload=reply.body)
    msg.opt.content_format = CONTENT_FORMAT_CBOR
    if reply.max_age_s is not None:
        msg.opt.max_age = reply.max_age_s
    return msg


Handler = Callable[[bytes, int | None], Awaitable[Reply]]


class _Router:
    """The server site: a fixed table of resources by Uri-Path, 4.04 for anything else.

    Unlike aiocoap.resource.Site it hands the request to the resource as it came (a Site
    deep-copies every request to strip the path: tens of µs per request).
    """

    def __init__(self, resources: dict[tuple[str, ...], _PayloadResource]) -> None:
        self._resources = resources
        self._handlers: dict[tuple[str, ...], Handler] = {
            path: r.handler for path, r in resources.items()
        }

    async def render_to_pipe(self, pipe: Any) -> None:
        resource = self._resources.get(pipe.request.opt.uri_path)
        if resource is None:
            raise error.NotFound()
        await resource.render_to_pipe(pipe)

    def plain_post_handler(self, request: Message) -> Handler | None:
        """The handler of a POST that the fast path can take whole: one datagram (no
        Block1), no Block2 or Observe asked for, to one of our paths; else None."""
        if request.code is not POST:
            return None
        opt = request.opt
        if opt.block1 is not None or opt.block2 is not None or opt.observe is not None:
            return None
        return self._handlers.get(opt.uri_path)


class _Context(aiocoap.Context):
    """aiocoap's Context, except that a request's task is not named after the request."""

    def render_to_pipe(self, pipe: Any) -> None:
        run_driving_pipe(
            error_to_message(pipe, self.log), self._render_to_pipe(pipe), name="coap request"
        )


def build_site(ingest: Ingest, *, max_reassemblies: int, retry_after_s: int) -> _Router:
    resources: dict[tuple[str, ...], _PayloadResource] = {}
    for path, health in ((PATH_TELEMETRY, False), (PATH_HEALTH, True)):
        block1 = BoundedBlock1(MAX_BATCH_BYTES, max_reassemblies, retry_after_s)
        resources[(path,)] = _PayloadResource(ingest, block1, health)
    return _Router(resources)


async def serve(site: _Router, bind: tuple[str, int], max_exchanges: int) -> aiocoap.Context:
    """The server context, its duplicate detection bounded (bound_duplicate_memory) and
    single-datagram POSTs on the fast path (_PlainPosts)."""
    context = await _Context.create_server_context(site, bind=bind, transports=["udp6"])
    if not bound_duplicate_memory(context, max_exchanges):
        log.warning(
            "aiocoap %s: cannot bound its duplicate detection; memory grows with the "
            "request rate for EXCHANGE_LIFETIME",
            getattr(aiocoap, "__version__", "?"),
        )
    if not _PlainPosts.install(context, site):
        log.warning("aiocoap's token layer is not the expected one: no fast path for POSTs")
    return context


_V4_MAPPED = bytes(10) + b"\xff\xff"


def _response_address(remote: Any) -> Any:
    """`remote.as_response_address()` without its cost on unicast requests: aiocoap decides
    by parsing the local address (pktinfo) with `ipaddress`, a few µs per request. A
    request that arrived on a multicast address (ff00::/8, or 224.0.0.0/4 as ::ffff:...)
    gets aiocoap's answer; any other arrival is answered from where it came, as aiocoap does."""
    local = getattr(remote, "pktinfo", None)
    if type(local) is not bytes or len(local) < 16:
        return remote.as_response_address()
    if local[0] == 0xFF or (local[:12] == _V4_MAPPED and 224 <= local[12] <= 239):
        return remote.as_response_address()
    return remote


def _no_interest() -> None:
    """The exchange monitor of a separate response: a RST from the device (it has forgotten
    the request) needs nothing from us."""


class _PlainPosts:
    """A TokenManager's intake of requests (TokenManager.process_request), with the POSTs
    that `site.plain_post_handler` accepts answered directly: the handler's reply goes to
    the MessageManager under the request's token, as aiocoap's own path would send it.
    Every other request goes to aiocoap's path unchanged."""

    def __init__(self, token_manager: Any, site: _Router) -> None:
        self._site = site
        self._aiocoap_path = token_manager.process_request
        self._messages = token_manager.token_interface
        self._tasks: set[asyncio.Task] = set()  # running answers, referenced until done

    @classmethod
    def install(cls, context: aiocoap.Context, site: _Router) -> bool:
        managers = [
            ti
            for ti in getattr(context, "request_interfaces", [])
            if isinstance(getattr(ti, "token_interface", None), MessageManager)
            and hasattr(ti, "process_request")
        ]
        for tm in managers:
            tm.process_request = cls(tm, site).process_request
        return bool(managers)

    def process_request(self, request: Message) -> None:
        handler = self._site.plain_post_handler(request)
        if handler is None:
            self._aiocoap_path(request)
            return
        task = asyncio.get_running_loop().create_task(self._answer(handler, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, handler: Handler, request: Message) -> None:
        try:
            response = _to_message(await handler(request.payload, request.opt.content_format))
        except Exception:
            log.exception("request from %s failed", request.remote)
            response = Message(code=INTERNAL_SERVER_ERROR)
        response.opt.no_response = request.opt.no_response
        response.token = request.token
        response.remote = _response_address(request.remote)
        response.request = request
        try:
            self._messages.send_message(response, _no_interest)
        except Exception as e:  # the context is shutting down under us: nothing to answer on
            log.debug("answer to %s not sent: %s", request.remote, e)


class _RecentExchanges:
    """A MessageManager's memory of recent requests, bounded in time and in number.

    Same contract as aiocoap's MessageManager._deduplicate_message and
    _store_response_for_duplicates, which it replaces on one MessageManager: a request
    seen before within EXCHANGE_LIFETIME is a duplicate (a CON one is answered again with
    the stored response, if there is one yet). Entries are kept in arrival order with their
    expiry, so expired ones are dropped from the front as new ones come in, and the oldest
    is forgotten when there are `max_entries`. The response is kept encoded, a few dozen
    bytes, not as the message object aiocoap keeps (which holds the request, payload and
    all, and a dozen objects for the garbage collector to walk).
    """

    def __init__(self, manager: Any, max_entries: int) -> None:
        self._manager = manager
        self._max = max_entries
        # (remote, message id) -> (expiry, the encoded response or None)
        self._entries: OrderedDict[Any, tuple[float, bytes | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def deduplicate(self, message: Message) -> bool:
        key = (message.remote, message.mid)
        now = time.monotonic()
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and entry[0] > now:
            if message.mtype is CON and entry[1] is not None:
                response = Message.decode(entry[1], message.remote.as_response_address())
                response.direction = Direction.OUTGOING  # a copy of what we sent, resent
                # Only what is sent under the request's own Message ID is stored: the
                # piggybacked response or the empty ACK, both ACKs, never retransmitted.
                self._manager._send_via_transport(response)
            return True
        if entry is not None:
            del entries[key]
        while entries:
            first = next(iter(entries.values()))
            if first[0] > now and len(entries) < self._max:
                break
            entries.popitem(last=False)
        entries[key] = (now + message.transport_tuning.EXCHANGE_LIFETIME, None)
        return False

    def store(self, message: Message) -> None:
        key = (message.remote, message.mid)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries[key] = (entry[0], message.encode())


def bound_duplicate_memory(context: aiocoap.Context, max_entries: int) -> bool:
    """Bound the Message-ID duplicate detection of every UDP message manager of `context`
    to `max_entries` exchanges (see _RecentExchanges). False if this aiocoap's internals
    are not the ones this was written for (nothing is changed then)."""
    managers: list[Any] = [
        m
        for ti in getattr(context, "request_interfaces", [])
        if isinstance(m := getattr(ti, "token_interface", None), MessageManager)
    ]
    needed = ("_deduplicate_message", "_store_response_for_duplicates", "_send_via_transport")
    if not managers or not all(hasattr(m, name) for m in managers for name in needed):
        return False
    for manager in managers:
        recent = _RecentExchanges(manager, max_entries)
        manager._deduplicate_message = recent.deduplicate
        manager._store_response_for_duplicates = recent.store
        manager._ringtail_recent = recent
    return True
