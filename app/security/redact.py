"""Keys never reach logs: a logging filter that masks API keys, the admin token and key-like
query parameters in every record (message, arguments and traceback text)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from app.auth.keys import SCHEME

REDACTED = "[REDACTED]"
# An API key's secret part; its public prefix (et_ + 8 hex) is kept, to tell keys apart.
_API_KEY = re.compile(rf"\b({SCHEME}_[0-9a-f]{{8}}_)[A-Za-z0-9_-]{{8,}}")
# Query parameters that carry credentials (refused with 401, but the access log sees the URL).
KEY_QUERY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token"})
_QUERY_KEY = re.compile(
    r"(?i)([?&](?:" + "|".join(re.escape(p) for p in sorted(KEY_QUERY_PARAMS)) + r")=)[^&\s\"']*"
)
# Secrets shorter than this are not masked by value (they would mask ordinary words).
_MIN_SECRET_CHARS = 8


class Redactor:
    """Masks API keys, key-like query parameters and the given secrets in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        text = _API_KEY.sub(rf"\g<1>{REDACTED}", text)
        text = _QUERY_KEY.sub(rf"\g<1>{REDACTED}", text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    """Rewrites each record so that no handler it reaches prints a secret."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: self.redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: format the traceback once, masked.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "gunicorn.access", "gunicorn.error")


def install_log_redaction(secrets: Iterable[str] = ()) -> RedactingFilter:
    """Add the filter to every handler of the root and server loggers (filters on a logger do
    not see records propagated from its children; filters on handlers see them all)."""
    log_filter = RedactingFilter(Redactor(secrets))
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(log_filter)
    return log_filter
