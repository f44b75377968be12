"""The wire between the engine and a step process, and the log limits both sides apply.

A frame is ``!II`` (header length, payload length), a small JSON header (``op`` and short
fields) and an optional payload: the raw JSON of one value (an output, a task result, a batch
of log lines). Keeping values out of the header lets the engine measure a value's size before
reading it, so a step cannot make the engine read more than the limits allow.

Standard library only: the step process imports this before it executes step code.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

PREFIX = struct.Struct("!II")
HEADER_MAX = 64 * 1024
LOG_LINE_MAX = 64 * 1024
MiB = 1024 * 1024


class ChannelClosed(Exception):
    """The other end went away (or sent something that is not a frame)."""


class FrameTooLarge(Exception):
    def __init__(self, header: dict[str, Any], size: int) -> None:
        super().__init__(f"a {header.get('op')!r} frame of {size} bytes")
        self.header = header
        self.size = size


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def send(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    head = dumps(header)
    prefix = PREFIX.pack(len(head), len(payload))
    try:
        if len(payload) < 64 * 1024:
            sock.sendall(prefix + head + payload)
        else:  # no copy of a large value
            sock.sendall(prefix + head)
            sock.sendall(payload)
    except OSError as exc:
        raise ChannelClosed(str(exc)) from None


def _read(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        try:
            n = sock.recv_into(view[got:], size - got)
        except OSError as exc:  # socket.timeout included: the caller set the deadline
            if isinstance(exc, TimeoutError):
                raise
            raise ChannelClosed(str(exc)) from None
        if n == 0:
            raise ChannelClosed("end of stream")
        got += n
    return bytes(buf)


def recv_header(sock: socket.socket) -> tuple[dict[str, Any], int]:
    """The next frame's header and its payload's size (the payload is still to be read)."""
    head_len, payload_len = PREFIX.unpack(_read(sock, PREFIX.size))
    if head_len > HEADER_MAX:
        raise ChannelClosed(f"a frame header of {head_len} bytes")
    try:
        header = json.loads(_read(sock, head_len))
    except ValueError:
        raise ChannelClosed("a frame header that is not JSON") from None
    if not isinstance(header, dict):
        raise ChannelClosed("a frame header that is not an object")
    return header, payload_len


def recv_payload(sock: socket.socket, size: int) -> Any:
    if size == 0:
        return None
    try:
        return json.loads(_read(sock, size))
    except ValueError:
        raise ChannelClosed("a payload that is not JSON") from None


def recv(sock: socket.socket, payload_max: int | None = None) -> tuple[dict[str, Any], Any]:
    header, size = recv_header(sock)
    if payload_max is not None and size > payload_max:
        raise FrameTooLarge(header, size)
    return header, recv_payload(sock, size)


def size_text(size: float) -> str:
    """4194304 → "4 MiB", 6291556 → "6.0 MiB", 900 → "900 bytes"."""
    if size >= MiB:
        value = size / MiB
        return f"{value:g} MiB" if value == int(value) else f"{value:.1f} MiB"
    if size >= 1024:
        value = size / 1024
        return f"{value:g} KiB" if value == int(value) else f"{value:.1f} KiB"
    return f"{int(size)} bytes"


def cut_line(message: str, limit: int = LOG_LINE_MAX) -> str:
    """A log message of at most ``limit`` bytes of UTF-8, saying how much was cut. Applying
    it twice changes nothing, so the engine can apply it again to what a step process sent."""
    data = message.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return message
    suffix_room = 40
    kept = data[: limit - suffix_room].decode("utf-8", "ignore")
    return f"{kept}… [cut: {len(message) - len(kept)} characters]"


class LogBudget:
    """``STEP_LOG_MAX_BYTES`` per execution: lines are kept until their sizes add up to the
    budget; after it, lines are counted and dropped."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.dropped = 0

    def admit(self, line: dict[str, Any]) -> bool:
        """Cuts the line's message (and fields) in place; False when it must be dropped."""
        if self.dropped:
            self.dropped += 1
            return False
        message = cut_line(str(line.get("message", "")))
        fields = line.get("fields")
        size = len(message.encode("utf-8", "surrogatepass"))
        if fields is not None:
            fields_size = len(dumps(fields))
            if fields_size > LOG_LINE_MAX:
                message = cut_line(f"{message} [fields cut: {fields_size} bytes of JSON]")
                fields = None
            else:
                size += fields_size
        if self.used + size > self.max_bytes:
            self.dropped = 1
            return False
        self.used += size
        line["message"], line["fields"] = message, fields
        return True

    def dropped_line(self) -> str | None:
        if not self.dropped:
            return None
        lines = "line" if self.dropped == 1 else "lines"
        return (
            f"{self.dropped} further log {lines} dropped: this execution logged more than "
            f"{size_text(self.max_bytes)} (STEP_LOG_MAX_BYTES)"
        )
