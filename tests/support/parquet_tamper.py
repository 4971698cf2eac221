"""Tampering with a Parquet file's footer, as an attacker would: the tests and the upload memory
benchmark build files whose footer lies about their sizes."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _padded_varint(n: int, length: int) -> bytes:
    out = bytearray()
    for i in range(length):
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if i < length - 1 else 0))
    return bytes(out)


def understate_footer(path: Path, sizes: Iterable[int], claimed: int = 100) -> None:
    """Rewrite the footer so that each of ``sizes`` (declared uncompressed sizes) reads
    ``claimed``.

    Thrift compact varints may carry padding (0x80 continuation bytes), so the new value takes
    exactly the old one's bytes and no offset moves.
    """
    data = bytearray(path.read_bytes())
    (footer_len,) = struct.unpack("<i", data[-8:-4])
    start = len(data) - 8 - footer_len
    footer = bytes(data[start:-8])
    for size in sizes:
        encoded = _varint(size << 1)  # zigzag of a positive i64
        assert encoded in footer
        footer = footer.replace(encoded, _padded_varint(claimed << 1, len(encoded)))
    data[start:-8] = footer
    path.write_bytes(bytes(data))
