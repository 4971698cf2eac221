"""Keyset cursors of the lists ordered newest first by (created_at, id): GET /jobs and GET
/webhooks/{id}/deliveries. A cursor is the base64url of "<created_at ISO>|<id>", parsed strictly:
anything else (other characters, a bad length or padding, a time without a timezone, an id of
another shape) is 422 invalid_cursor, never a 500."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from app.errors import ValidationFailed

_TEXT = re.compile(r"[A-Za-z0-9_-]{1,200}")


def encode(created_at: datetime, item_id: str) -> str:
    raw = f"{created_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, id_pattern: re.Pattern[str], source: str) -> tuple[datetime, str]:
    """(created_at in UTC, id) of a cursor `encode` made whose id fullmatches `id_pattern`;
    422 invalid_cursor naming `source` (the operation that returns such cursors) otherwise."""
    try:
        if not _TEXT.fullmatch(cursor) or len(cursor) % 4 == 1:
            raise ValueError("not base64url")
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created_text, item_id = raw.decode("ascii").split("|")
        created = datetime.fromisoformat(created_text)
        if created.tzinfo is None or not id_pattern.fullmatch(item_id):
            raise ValueError("not a cursor")
        return created.astimezone(UTC), item_id
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError) as exc:
        raise ValidationFailed(
            f"cursor: not a cursor returned by {source}", {"field": "cursor"}, code="invalid_cursor"
        ) from exc
