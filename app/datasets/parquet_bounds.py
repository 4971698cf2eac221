"""What reading a Parquet file will cost, found before any of its data is read.

A Parquet file's size says little about its data: a 3 KB zstd file can hold three 20 MB strings,
and a dictionary-encoded column can repeat one long string on every row. Two looks, both before
Arrow decodes a single value:

1. The footer: the declared uncompressed sizes of the column chunks used
   (``ColumnChunkMetaData.total_uncompressed_size``), summed against the dataset limit. Cheap,
   but only a claim: Arrow itself never uses these sizes, so a tampered footer is read as if
   honest.
2. The page headers of those column chunks (Thrift compact structs, parsed here): each page's
   real uncompressed size, value count and encoding, which is what Arrow allocates and decodes
   by (a page whose data inflates past its header's size fails to decompress: an Arrow error,
   reported as unreadable). Their sum is checked against the dataset limit again, and they
   decide how many rows :func:`plan_row_group` lets one record batch hold.

The memory bound: reading one record batch holds, per used column, the current page (compressed
and decompressed), the dictionary page, and the batch's decoded values: those of plain pages lie
within the pages the batch's rows span, a DELTA_BYTE_ARRAY value (sharing a prefix with the one
before) can be as long as its page, and a dictionary-encoded row is a copy of a dictionary value
(the dictionary page is read and decoded here to find the longest, so a dictionary bomb, one
long text on every row, is read a few rows at a time). :func:`plan_row_group` picks the largest
batch (at most ``MAX_BATCH_ROWS`` rows) whose worst case stays within ``READ_BUDGET_BYTES``, and
refuses a row group where even one row cannot (pages too large): so Arrow holds at most
``READ_BUDGET_BYTES`` while reading, whatever the footer declares.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from app.datasets.errors import DatasetFormatError, DatasetTooLarge, TextTooLong

# Decoded bytes one record batch may reach, pages of all used columns together, worst case.
READ_BUDGET_BYTES = 64 * 1024 * 1024
MAX_BATCH_ROWS = 1024
# Page headers scanned per file at most: legit writers make pages of ~1 MB (about 4,000 for a
# 4 GB dataset); millions of tiny pages only make the scan (Python) slow.
MAX_PAGES = 200_000
_HEADER_WINDOW = 64 * 1024
_MAX_HEADER_BYTES = 16 * 1024 * 1024  # Arrow's own default limit for a page header

UTF8_MAX_BYTES = 4
_TEXT_SLACK_BYTES = 64 * 1024
_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 1, 2, 3
_DELTA_BYTE_ARRAY = 7  # the encoding whose values can each be as long as the page


@dataclass(frozen=True)
class ChunkPages:
    """The pages of one column chunk, from their headers."""

    column: str
    dictionary_bytes: int  # uncompressed size of the dictionary page, 0 without one
    data_pages: tuple[tuple[int, int], ...]  # (uncompressed bytes, values) of each data page
    prefix_encoded: bool  # some data page uses DELTA_BYTE_ARRAY
    compressed_bytes: int  # largest compressed page: a buffer Arrow reads it into
    # Longest value in the dictionary page (read and decoded here): what one row of a
    # dictionary-encoded page expands to when Arrow decodes it.
    dictionary_value_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.dictionary_bytes + sum(size for size, _ in self.data_pages)

    @property
    def buffer_bytes(self) -> int:
        """What Arrow holds whatever the batch: the dictionary, the current page compressed
        and decompressed."""
        largest = max((size for size, _ in self.data_pages), default=0)
        return self.dictionary_bytes + largest + self.compressed_bytes

    def values_bytes(self, rows: int) -> int:
        """The most bytes the decoded values of ``rows`` consecutive rows can take.

        A plain or DELTA_LENGTH value is never longer than its page; a DELTA_BYTE_ARRAY value
        (sharing a prefix with the one before) can each be as long as its page; a
        dictionary-encoded value is a copy of a dictionary value.
        """
        if not self.data_pages:
            return 0
        largest = max(size for size, _ in self.data_pages)
        expanded = rows * self.dictionary_value_bytes
        if self.prefix_encoded:
            return rows * largest + expanded
        # Pages but the last hold at least `fewest` values each, so `rows` rows span at most
        # ceil(rows / fewest) + 1 pages.
        inner = self.data_pages[:-1] or self.data_pages
        fewest = max(1, min(values for _, values in inner))
        spanned = min(len(self.data_pages), -(-rows // fewest) + 1)
        return min(spanned * largest, self.total_bytes) + expanded + 8 * rows

    def read_bytes(self, rows: int) -> int:
        """Buffers plus decoded values: the most reading a batch of ``rows`` rows can hold."""
        return self.buffer_bytes + self.values_bytes(rows)


def leaf_indexes(metadata: pq.FileMetaData, names: Sequence[str]) -> dict[int, str]:
    """Leaf column index -> the top-level column it belongs to, for the columns ``names``."""
    wanted = set(names)
    found: dict[int, str] = {}
    if metadata.num_row_groups == 0:
        return found
    group = metadata.row_group(0)
    for index in range(group.num_columns):
        path = group.column(index).path_in_schema
        top = path if path in wanted else path.split(".", 1)[0]
        if top in wanted:
            found[index] = top
    return found


def check_declared_size(
    metadata: pq.FileMetaData, leaves: dict[int, str], limit: int | None
) -> int:
    """The declared uncompressed bytes of the used column chunks; DatasetTooLarge over
    ``limit``."""
    declared = sum(
        metadata.row_group(g).column(j).total_uncompressed_size
        for g in range(metadata.num_row_groups)
        for j in leaves
    )
    if limit is not None and declared > limit:
        raise too_large(declared, limit, "declares")
    return declared


def too_large(size: int, limit: int, verb: str) -> DatasetTooLarge:
    return DatasetTooLarge(
        f"the file {verb} {size} bytes of uncompressed data in the columns used, more than the "
        f"limit of {limit} bytes",
        {"uncompressed_bytes": size, "max_dataset_uncompressed_bytes": limit},
        limit_field="max_dataset_uncompressed_bytes",
    )


def scan_row_group(
    handle: BinaryIO, metadata: pq.FileMetaData, group: int, leaves: dict[int, str], pages: int
) -> list[ChunkPages]:
    """The page headers of row group ``group``'s used column chunks (``pages``: pages scanned
    so far, for ``MAX_PAGES``). DatasetFormatError when a header is unreadable or a page runs
    past its chunk."""
    chunks = []
    for index, column in leaves.items():
        chunk = metadata.row_group(group).column(index)
        start = chunk.data_page_offset
        if chunk.has_dictionary_page and 0 < chunk.dictionary_page_offset < start:
            start = chunk.dictionary_page_offset
        found = _scan_chunk(handle, column, group, start, start + chunk.total_compressed_size)
        pages += len(found.data_pages) + (1 if found.dictionary_bytes else 0)
        if pages > MAX_PAGES:
            raise DatasetFormatError(
                f"the file has more than {MAX_PAGES} pages in the columns used; write it with "
                "larger pages (pyarrow's default page size is 1 MB)",
                {"column": column},
            )
        chunks.append(found)
    return chunks


def measure_dictionaries(
    handle: BinaryIO,
    metadata: pq.FileMetaData,
    group: int,
    leaves: dict[int, str],
    chunks: Sequence[ChunkPages],
) -> list[ChunkPages]:
    """``chunks`` (from :func:`scan_row_group`) with the longest value of each dictionary set
    (decoded here, a page within the budget at a time; else the whole page is assumed)."""
    measured = []
    for index, found in zip(leaves, chunks, strict=True):
        if found.dictionary_bytes:
            chunk = metadata.row_group(group).column(index)
            longest = None
            if chunk.physical_type == "BYTE_ARRAY":
                start = chunk.dictionary_page_offset or chunk.data_page_offset
                longest = _longest_dictionary_value(handle, start, chunk.compression)
            found = dataclasses.replace(
                found, dictionary_value_bytes=longest or found.dictionary_bytes
            )
        measured.append(found)
    return measured


def check_text_bytes(
    chunks: Sequence[ChunkPages],
    group: int,
    first_row: int,
    rows: int,
    text_columns: Sequence[str],
    max_text_chars: int | None,
) -> None:
    """TextTooLong when a text column's pages hold more than ``rows`` texts within
    ``max_text_chars`` could (4 UTF-8 bytes a character, a 4-byte length each, plus slack):
    then some text is too long, found before any is decoded. Names the row group's rows."""
    if max_text_chars is None:
        return
    allowed = rows * (UTF8_MAX_BYTES * max_text_chars + 16) + _TEXT_SLACK_BYTES
    for chunk in chunks:
        if chunk.column in text_columns and chunk.total_bytes > allowed:
            last = first_row + rows - 1
            place = f"row {first_row}" if rows == 1 else f"rows {first_row}-{last}"
            raise TextTooLong(
                f"{place}: column '{chunk.column}' holds {chunk.total_bytes} "
                f"bytes of text in {rows} row(s), so at least one text is longer than the limit "
                f"of {max_text_chars} characters",
                {
                    "row": first_row,
                    "rows": [first_row, last],
                    "column": chunk.column,
                    "max_text_chars": max_text_chars,
                },
            )


def plan_row_group(chunks: Sequence[ChunkPages], group: int, rows: int) -> int:
    """The rows per record batch that keep reading row group ``group`` within the budget.

    DatasetFormatError when even a single row cannot be read within it (pages too large).
    """
    batch = min(MAX_BATCH_ROWS, max(1, rows))
    while batch > 1 and sum(c.read_bytes(batch) for c in chunks) > READ_BUDGET_BYTES:
        batch //= 2
    if sum(c.read_bytes(1) for c in chunks) > READ_BUDGET_BYTES:
        biggest = max(chunks, key=lambda c: c.read_bytes(1))
        raise DatasetFormatError(
            f"row group {group + 1} has pages too large to read within the memory bound of "
            f"{READ_BUDGET_BYTES} bytes (column '{biggest.column}': "
            f"{biggest.read_bytes(1)} bytes); write the file with smaller pages and row "
            "groups (e.g. pyarrow's defaults), or split long texts",
            {"column": biggest.column, "row_group": group + 1},
        )
    return batch


def _scan_chunk(handle: BinaryIO, column: str, group: int, start: int, end: int) -> ChunkPages:
    dictionary = 0
    data: list[tuple[int, int]] = []
    prefix_encoded = False
    compressed_max = 0
    position = start
    while position < end:
        header, length = _read_header(handle, position, column, group)
        kind, uncompressed, compressed = header.get(1), header.get(2), header.get(3)
        if not all(isinstance(v, int) and v >= 0 for v in (kind, uncompressed, compressed)):
            raise _corrupt(column, group, "a page header lacks its sizes")
        assert isinstance(uncompressed, int) and isinstance(compressed, int)
        compressed_max = max(compressed_max, compressed)
        if kind == _DICTIONARY_PAGE:
            dictionary += uncompressed
        elif kind in (_DATA_PAGE, _DATA_PAGE_V2):
            # num_values (v1) / num_rows (v2), and the values' encoding
            sub, values_field, encoding_field = (5, 1, 2) if kind == _DATA_PAGE else (8, 3, 4)
            page = header.get(sub)
            page = page if isinstance(page, dict) else {}
            values = page.get(values_field)
            data.append((uncompressed, values if isinstance(values, int) and values > 0 else 1))
            prefix_encoded = prefix_encoded or page.get(encoding_field) == _DELTA_BYTE_ARRAY
        position += length + compressed
    if position != end:
        raise _corrupt(column, group, "a page runs past the end of its column chunk")
    return ChunkPages(column, dictionary, tuple(data), prefix_encoded, compressed_max)


def _longest_dictionary_value(handle: BinaryIO, start: int, compression: str) -> int | None:
    """The longest value (bytes) of the PLAIN byte-array dictionary page at ``start``; None
    where it cannot be told (codec not available, page too big, not the layout expected):
    the caller then assumes the whole page."""
    header, length = _read_header(handle, start, "", 0)
    uncompressed, compressed = header.get(2), header.get(3)
    if header.get(1) != _DICTIONARY_PAGE or not isinstance(uncompressed, int):
        return None
    if not isinstance(compressed, int) or uncompressed > READ_BUDGET_BYTES // 4:
        return None
    handle.seek(start + length)
    raw: bytes | pa.Buffer = handle.read(compressed)
    codec = compression.lower()
    try:
        if codec != "uncompressed":
            if not pa.Codec.is_available(codec) or codec == "lz4":  # Parquet's LZ4 is framed
                return None
            raw = pa.Codec(codec).decompress(raw, decompressed_size=uncompressed)
    except (pa.ArrowException, ValueError):
        return None
    page = memoryview(raw)
    longest = position = 0
    while position + 4 <= len(page):
        (size,) = struct.unpack_from("<I", page, position)
        longest = max(longest, size)
        position += 4 + size
    return longest if position == len(page) else None


def _read_header(
    handle: BinaryIO, position: int, column: str, group: int
) -> tuple[dict[int, object], int]:
    window = _HEADER_WINDOW
    while True:
        handle.seek(position)
        buffer = handle.read(window)
        try:
            return _ThriftStruct(buffer).read()
        except _Truncated:
            if window >= _MAX_HEADER_BYTES or len(buffer) < window:
                raise _corrupt(column, group, "a page header is unreadable") from None
            window *= 4
        except ValueError:
            raise _corrupt(column, group, "a page header is unreadable") from None


def _corrupt(column: str, group: int, problem: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"the file could not be read as Parquet (row group {group + 1}, column '{column}': "
        f"{problem})",
        {"column": column, "row_group": group + 1},
    )


class _Truncated(Exception):
    """The header continues past the bytes read."""


class _ThriftStruct:
    """A minimal Thrift compact-protocol reader: structs as {field id: int | dict}, other
    values skipped (strings, lists, maps, doubles)."""

    _MAX_DEPTH = 16

    def __init__(self, buffer: bytes) -> None:
        self._buffer = buffer
        self._pos = 0

    def read(self) -> tuple[dict[int, object], int]:
        return self._struct(0), self._pos

    def _byte(self) -> int:
        if self._pos >= len(self._buffer):
            raise _Truncated
        value = self._buffer[self._pos]
        self._pos += 1
        return value

    def _varint(self) -> int:
        result = shift = 0
        while True:
            byte = self._byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ValueError("varint too long")

    def _zigzag(self) -> int:
        n = self._varint()
        return (n >> 1) ^ -(n & 1)

    def _skip(self, count: int) -> None:
        if count < 0:
            raise ValueError("negative length")
        self._pos += count
        if self._pos > len(self._buffer):
            raise _Truncated

    def _struct(self, depth: int) -> dict[int, object]:
        if depth > self._MAX_DEPTH:
            raise ValueError("structs nested too deep")
        fields: dict[int, object] = {}
        last = 0
        while True:
            head = self._byte()
            kind = head & 0x0F
            if kind == 0:  # stop
                return fields
            delta = head >> 4
            last = last + delta if delta else self._zigzag()
            fields[last] = self._value(kind, depth)

    def _value(self, kind: int, depth: int) -> object:
        if kind in (1, 2):  # booleans live in the field header
            return kind == 1
        if kind == 3:
            return self._byte()
        if kind in (4, 5, 6):
            return self._zigzag()
        if kind == 7:
            self._skip(8)
            return None
        if kind == 8:
            self._skip(self._varint())
            return None
        if kind in (9, 10):
            head = self._byte()
            size = head >> 4 if head >> 4 != 15 else self._varint()
            for _ in range(size):
                self._element(head & 0x0F, depth)
            return None
        if kind == 11:
            size = self._varint()
            if size:
                types = self._byte()
                for _ in range(size):
                    self._element(types >> 4, depth)
                    self._element(types & 0x0F, depth)
            return None
        if kind == 12:
            return self._struct(depth + 1)
        raise ValueError(f"unknown Thrift type {kind}")

    def _element(self, kind: int, depth: int) -> None:
        # In lists and maps a boolean takes a byte of its own.
        if kind in (1, 2):
            self._byte()
        else:
            self._value(kind, depth)
