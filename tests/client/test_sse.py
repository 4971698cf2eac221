"""The Server-Sent Events parser."""

from __future__ import annotations

from embedtune_client.sse import ServerSentEvent, iter_sse


def test_messages_comments_ids_and_multiline_data() -> None:
    lines = [
        ": keep-alive",
        "",
        "id: 1",
        "event: queued",
        'data: {"a":',
        "data:  1}",
        "retry: 3000",
        "",
        "event: progress",
        "data: {}",
        "",
        "data: no blank line after me",
    ]
    assert list(iter_sse(lines)) == [
        ServerSentEvent("queued", '{"a":\n 1}', "1", 3000),
        ServerSentEvent("progress", "{}", "1"),  # the last event id carries over
    ]
    with_comments = list(iter_sse(lines, comments=True))
    assert with_comments[0].is_comment and with_comments[0].data == "keep-alive"


def test_messages_without_data_are_dropped() -> None:
    assert list(iter_sse(["event: ping", "", "id: 4", ""])) == []
    assert list(iter_sse(["id: 4", "", "data: x", ""])) == [ServerSentEvent("message", "x", "4")]
