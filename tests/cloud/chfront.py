"""A small HTTP front over chDB that speaks enough of ClickHouse's HTTP interface for
clickhouse-connect: so the writer's server path runs in the test suite on the real engine.

    python -m tests.cloud.chfront --path DIR --port N

Covered: GET /ping; queries in the `query` URL parameter and/or the body (joined as the
server does); INSERT with the data in the body (any input format chDB reads, the trailing
`FORMAT x` of the query names it); request bodies in gzip, deflate, zstd or lz4
(Content-Encoding); URL parameters that are not transport options applied as settings of
an INSERT; `FORMAT x` of a SELECT or `default_format` as the output format; errors as HTTP
500 with X-ClickHouse-Exception-Code. Responses are never compressed (allowed: the client
asks for compression, the server may decline). One chDB session, requests serialized.
Not covered: sessions, external tables, query parameters, progress headers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

# URL parameters that steer the HTTP layer, not the query.
_TRANSPORT = {
    "query",
    "database",
    "default_format",
    "session_id",
    "session_timeout",
    "session_check",
    "query_id",
    "user",
    "password",
    "compress",
    "decompress",
    "enable_http_compression",
    "wait_end_of_query",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close",
    "client_protocol_version",
    "quota_key",
}
_FORMAT = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_BODY_FORMAT = re.compile(rb"\sFORMAT\s+[A-Za-z0-9_]+[ \t]*\r?\n?", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class Front:
    def __init__(self, path: Path) -> None:
        from chdb import ChdbError, session

        self.errors = (ChdbError, RuntimeError, ValueError)
        self.session = session.Session(str(path))
        self.lock = threading.Lock()

    def handle(self, params: dict[str, str], body: bytes) -> tuple[bytes, str, int]:
        """(response body, format, rows written)."""
        query = params.get("query", "")
        if not query and body.lstrip()[:6].upper() == b"INSERT":
            # the statement leads the body; its data starts after "FORMAT name\n"
            # (INSERT ... VALUES without FORMAT is a plain statement)
            head = _BODY_FORMAT.search(body, 0, 1 << 16)
            if head is not None:
                query, body = body[: head.end()].decode().rstrip(), body[head.end() :]
        is_insert = query.lstrip()[:6].upper() == "INSERT" and body
        if not is_insert:
            query = f"{query}\n{body.decode()}" if query else body.decode()
        match = _FORMAT.search(query)
        fmt = match.group(1) if match else params.get("default_format", "TabSeparated")
        sql = query[: match.start()] if match else query
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT}
        with self.lock:
            if is_insert:
                if settings:
                    sql += " SETTINGS " + ", ".join(
                        f"{k} = '{v.replace(chr(39), '')}'" for k, v in settings.items()
                    )
                with self.session.send_insert(sql, fmt) as ins:
                    ins.append(body)
                    res = ins.finish()
                return b"", fmt, int(res.rows_written)
            res = self.session.query(sql, fmt)
            return bytes(res.bytes() or b""), fmt, 0


def serve(path: Path, port: int) -> None:
    front = Front(path)
    front.session.query("SET output_format_json_quote_64bit_integers = 0")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            if url.path.rstrip("/") == "/ping":
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain"})
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                body = _decompress(body, self.headers.get("Content-Encoding", ""))
                if not params.get("query") and not body:
                    self._reply(200, b"Ok.\n", {"Content-Type": "text/plain"})
                    return
                out, fmt, written = front.handle(params, body)
            except front.errors as e:
                text = str(e).strip()
                code = _CODE.search(text)
                self._reply(
                    500,
                    (text + "\n").encode(),
                    {
                        "Content-Type": "text/plain; charset=UTF-8",
                        "X-ClickHouse-Exception-Code": code.group(1) if code else "1001",
                    },
                )
                return
            summary = {"read_rows": "0", "written_rows": str(written), "written_bytes": "0"}
            self._reply(
                200,
                out,
                {
                    "Content-Type": "application/octet-stream",
                    "X-ClickHouse-Format": fmt,
                    "X-ClickHouse-Timezone": "UTC",
                    "X-ClickHouse-Server-Display-Name": "chfront",
                    "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
                    "X-ClickHouse-Summary": json.dumps(summary),
                },
            )

        do_GET = _handle
        do_POST = _handle

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        front.session.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    serve(args.path, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
