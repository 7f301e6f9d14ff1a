"""The one error type of the wire contract: what was wrong, and the CoAP code to answer."""

from __future__ import annotations

from protocol.constants import code_text


class ProtocolError(ValueError):
    """A payload the gateway refuses. `code` is the CoAP response code byte (e.g. 0x96 for
    4.22), `reason` a sentence for a person, `path` where in the message it went wrong
    (e.g. `series[2].values[17]`), empty when it concerns the whole payload."""

    def __init__(self, code: int, reason: str, path: str = "") -> None:
        self.code = code
        self.reason = reason
        self.path = path
        super().__init__(f"{code_text(code)}: {self.detail}")

    @property
    def detail(self) -> str:
        """The reason with its path: what the error body carries."""
        return f"{self.reason} at {self.path}" if self.path else self.reason

    @property
    def code_text(self) -> str:
        return code_text(self.code)
