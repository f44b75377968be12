"""Run ids: 26-character, time-ordered (ULID layout), so that ordering by id is ordering by
creation and a cursor is just the last id seen."""

from __future__ import annotations

import os
import time

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def time_part(millis: int) -> str:
    """The first 10 characters of every id made at this millisecond (Unix time)."""
    return _encode(millis, 10)


def new_id() -> str:
    millis = int(time.time() * 1000)
    randomness = int.from_bytes(os.urandom(10), "big")
    return time_part(millis) + _encode(randomness, 16)
