"""POST /datasets' multipart/form-data body, parsed while it streams in.

The `file` part goes straight to a temporary file in this process's scratch uploads/ folder,
counted and hashed as it arrives: nothing is spooled in memory or in /tmp first, and the upload
stops (413) as soon as it passes the team's limit, whether or not the client sent a
Content-Length (a chunked body is counted the same way). The same bytes are also written to the
object store as they arrive (a staged object: an S3 multipart upload, a few 8 MiB parts in
memory at most), so a large upload is not sent to the store a second time once it is accepted. The
staged object becomes visible only when the caller commits it, after validation; the partial
file is removed and the staged object aborted on every failure. The other fields (`name`,
`column_mapping`) are small and kept in memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import PayloadTooLarge
from app.limits import FORM_OVERHEAD_BYTES, Limits, upload_too_large
from app.storage import ObjectWriter

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # one non-file form field
MAX_PARTS = 100
_FEED_BYTES = 1024 * 1024  # body bytes parsed and written (in a worker thread) in pieces this big
# How much of the file is read to tell its format (with its name): the staged object's key
# depends on the format, so it is opened once this much has arrived (or the file has ended).
SNIFF_BYTES = 4096


@dataclass
class StagedObject:
    """The file part as written to the store while it arrived: invisible until `commit`."""

    key: str
    writer: ObjectWriter
    done: bool = False

    def commit(self) -> None:
        self.done = True  # a failed commit aborts itself
        self.writer.commit()

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.writer.abort()


# The staged object for a file, from its name and first SNIFF_BYTES bytes; None stages nothing
# (the file will be stored, if accepted, from the local copy).
StageOpener = Callable[[str | None, bytes], StagedObject | None]


@dataclass
class ReceivedUpload:
    """The stored file part and the other fields of an upload.

    ``path`` is a temporary file and ``staged`` an uncommitted object the caller owns: it must
    move or delete the one, commit or abort the other (``discard`` drops both).
    """

    path: Path
    filename: str | None
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)
    staged: StagedObject | None = None

    def discard(self) -> None:
        """Forget the upload: remove its file, abort its staged object. Blocking (the store)."""
        self.path.unlink(missing_ok=True)
        if self.staged is not None:
            self.staged.abort()


class _StoreTee:
    """Copies the file part's bytes to a staged object, opened once the file's name and first
    bytes are known."""

    def __init__(self, open_staged: StageOpener | None) -> None:
        self._open = open_staged
        self._head = bytearray()
        self._decided = open_staged is None
        self.staged: StagedObject | None = None

    def write(self, data: bytes, filename: str | None) -> None:
        if not self._decided:
            self._head += data
            if len(self._head) >= SNIFF_BYTES:
                self.finish(filename)
        elif self.staged is not None and data:
            self.staged.writer.write(data)

    def finish(self, filename: str | None) -> None:
        """The file part has ended (or enough of it arrived): open the object if not yet."""
        if self._decided:
            return
        self._decided = True
        head, self._head = bytes(self._head), bytearray()
        assert self._open is not None
        self.staged = self._open(filename, head[:SNIFF_BYTES])
        if self.staged is not None and head:
            self.staged.writer.write(head)

    def abort(self) -> None:
        if self.staged is not None:
            self.staged.abort()


def body_invalid(
    field_name: str, message: str, kind: str = "value_error"
) -> RequestValidationError:
    """A 422 validation_error for the form field (or "body"), in the API's usual shape."""
    loc = ("body",) if field_name == "body" else ("body", field_name)
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message, "input": None}])


class _Receiver:
    """python-multipart callbacks: route each part to the file, a field, or nowhere."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_seen = False
        self.size = 0
        self.pending = bytearray()  # file bytes not yet written
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._kind = "skip"  # of the current part: "file", "field" or "skip"
        self._name = ""
        self._value = bytearray()

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise body_invalid("body", f"at most {MAX_PARTS} form fields")
        self._disposition = b""
        self._kind = "skip"
        self._value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise body_invalid("body", "a form part has no Content-Disposition name")
        self._name = name.decode("utf-8", "replace")
        if self._name == FILE_FIELD:
            if self.file_seen:
                raise body_invalid(FILE_FIELD, "send one file per upload")
            self.file_seen = True
            filename = options.get(b"filename")
            self.filename = filename.decode("utf-8", "replace") if filename else None
            self._kind = "file"
        elif b"filename" in options:
            self._kind = "skip"  # another file: not ours to keep
        else:
            self._kind = "field"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._kind == "file":
            self.size += end - start
            if self.size > self.limits.max_upload_bytes:
                raise upload_too_large(self.limits)
            self.pending += data[start:end]
        elif self._kind == "field":
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(
                    f"form field '{self._name}' is larger than {MAX_FIELD_BYTES} bytes",
                    {"field": self._name, "limit_bytes": MAX_FIELD_BYTES},
                )

    def on_part_end(self) -> None:
        if self._kind == "field":
            self.fields[self._name] = self._value.decode("utf-8", "replace")

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }


def check_content_length(request: Request, limits: Limits) -> None:
    """413 at once when the declared body is larger than the file limit plus form overhead."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limits.max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise upload_too_large(limits)


async def receive_upload(
    request: Request,
    tmp_dir: Path,
    limits: Limits,
    limiter: anyio.CapacityLimiter | None = None,
    stage: StageOpener | None = None,
) -> ReceivedUpload:
    """Stream the request's multipart body: the `file` part into a new file in ``tmp_dir`` and,
    with ``stage``, into the staged object it opens; parsed and written in threads of
    ``limiter`` (default: anyio's shared pool).

    Raises 413 (PayloadTooLarge) once the file passes ``limits.max_upload_bytes`` or the body
    passes it plus FORM_OVERHEAD_BYTES, 422 (RequestValidationError) for a body that is not
    multipart/form-data, is malformed, or has no `file`, and StorageUnavailable when the store
    refuses a part; the partial file is removed and the staged object aborted then (also when
    the client goes away).
    """
    check_content_length(request, limits)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        # As a form without the field: what a JSON or urlencoded body amounts to.
        raise body_invalid(FILE_FIELD, "Field required", "missing")
    boundary = options.get(b"boundary")
    if not boundary:
        raise body_invalid("body", "multipart/form-data without a boundary")

    receiver = _Receiver(limits)
    parser = MultipartParser(boundary, receiver.callbacks())
    digest = hashlib.sha256()
    tee = _StoreTee(stage)
    body_limit = limits.max_upload_bytes + FORM_OVERHEAD_BYTES
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:

            def feed(data: bytes, last: bool) -> None:
                # Parsing and writing run in a worker thread: the event loop only moves bytes.
                parser.write(data)
                if last:
                    parser.finalize()
                pending = bytes(receiver.pending)
                receiver.pending.clear()
                digest.update(pending)
                out.write(pending)
                tee.write(pending, receiver.filename)
                if last and receiver.file_seen:
                    tee.finish(receiver.filename)

            received = 0
            buffered = bytearray()
            async for chunk in request.stream():
                received += len(chunk)
                if received > body_limit:
                    raise upload_too_large(limits)
                buffered += chunk
                if len(buffered) >= _FEED_BYTES:
                    await anyio.to_thread.run_sync(feed, bytes(buffered), False, limiter=limiter)
                    buffered.clear()
            await anyio.to_thread.run_sync(feed, bytes(buffered), True, limiter=limiter)
        if not receiver.file_seen:
            raise body_invalid(FILE_FIELD, "Field required", "missing")
    except FormParserError as exc:
        await _discard(path, tee)
        raise body_invalid("body", "not a valid multipart/form-data body") from exc
    except BaseException:
        await _discard(path, tee)
        raise
    return ReceivedUpload(
        path=path,
        filename=receiver.filename,
        size=receiver.size,
        sha256=digest.hexdigest(),
        fields=receiver.fields,
        staged=tee.staged,
    )


async def _discard(path: Path, tee: _StoreTee) -> None:
    """Remove the partial file and abort the staged object (a call to the store: in a thread,
    and shielded, so a cancelled request still leaves no pending multipart upload)."""
    path.unlink(missing_ok=True)
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(tee.abort)
