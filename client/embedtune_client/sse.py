"""A Server-Sent Events parser (the text/event-stream format of the HTML standard), enough for
GET /jobs/{id}/stream: `event`, `data` (multi-line), `id`, `retry` and `:` comments."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched message. A comment (`: keep-alive`) is yielded as event `""` when asked
    for, so a reader can notice that the connection is alive."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    @property
    def is_comment(self) -> bool:
        return self.event == ""


def iter_sse(lines: Iterable[str], *, comments: bool = False) -> Iterator[ServerSentEvent]:
    """Messages from the stream's lines (without line endings, as httpx's iter_lines gives
    them). A message is dispatched at a blank line; one without data is dropped, as browsers do.
    `id` carries over to later messages until changed (the last event id)."""
    event, retry = "", None
    data: list[str] = []
    last_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id, retry)
            event, data, retry = "", [], None
            continue
        if line.startswith(":"):
            if comments:
                yield ServerSentEvent("", line[1:].lstrip(), last_id)
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)
    # Data left without a blank line after it is an incomplete message (a cut stream): dropped.
