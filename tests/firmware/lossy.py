"""A lossy UDP proxy on loopback: what a bad radio link does to CoAP, reproducibly.

Datagrams from a client to `port` go to the target from one upstream socket per client,
and the answers come back; each direction drops a seeded fraction of what passes through.
Nothing is reordered or delayed beyond the thread's scheduling. Counts are kept per
direction so a test can show that loss really happened.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
from dataclasses import dataclass


@dataclass
class Counts:
    passed: int = 0
    dropped: int = 0


class LossyProxy:
    def __init__(
        self, target_port: int, loss: float = 0.3, seed: int = 1, host: str = "127.0.0.1"
    ) -> None:
        self.target = (host, target_port)
        self.loss = loss
        self._up_rng = random.Random(seed)
        self._down_rng = random.Random(seed + 1)
        self.up = Counts()  # client -> target
        self.down = Counts()  # target -> client
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind((host, 0))
        self._front.setblocking(False)
        self.port = self._front.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._front, selectors.EVENT_READ, None)
        self._upstream: dict[tuple[str, int], socket.socket] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-proxy", daemon=True)

    def start(self) -> LossyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for s in self._upstream.values():
            s.close()
        self._front.close()
        self._sel.close()

    def __enter__(self) -> LossyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.05):
                client = key.data
                try:
                    if client is None:
                        data, addr = self._front.recvfrom(65535)
                        self._forward_up(data, addr)
                    else:
                        data = key.fileobj.recv(65535)  # type: ignore[union-attr]
                        if self._down_rng.random() < self.loss:
                            self.down.dropped += 1
                        else:
                            self.down.passed += 1
                            self._front.sendto(data, client)
                except OSError:
                    continue  # ICMP errors from a target that is not up: the datagram is lost

    def _forward_up(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._up_rng.random() < self.loss:
            self.up.dropped += 1
            return
        s = self._upstream.get(addr)
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect(self.target)
            self._upstream[addr] = s
            self._sel.register(s, selectors.EVENT_READ, addr)
        self.up.passed += 1
        s.send(data)
