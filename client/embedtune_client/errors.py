"""Exceptions of the client. Every API error carries the response's `code`, `message` and
`details` (the API's one error shape: {"error": {"code", "message", "details"}})."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from embedtune_client.models import Job


class EmbedtuneError(Exception):
    """Base class of every error raised by the client."""


class APIError(EmbedtuneError):
    """The API answered with an error status.

    Attributes: `status_code` (HTTP status), `code` (the API's stable code, e.g.
    `dataset_invalid`), `message` (for people), `details` (structured context or None),
    `retry_after` (seconds from a `Retry-After` header, or None).
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class AuthenticationError(APIError):
    """401: no API key, or one that is unknown or revoked."""


class NotFoundError(APIError):
    """404: an unknown id (or one of another team, which looks the same)."""


class ConflictError(APIError):
    """409: e.g. `job_finished` on cancel, `job_not_succeeded` on download."""


class ValidationError(APIError):
    """422: the request was refused (validation_error, limit_exceeded, dataset_invalid, ...)."""


class RateLimitedError(APIError):
    """429 after the client's retries ran out (too_many_active_jobs, too_many_uploads, ...)."""


class ServiceUnavailableError(APIError):
    """503 after the client's retries ran out."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def api_error(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    *,
    retry_after: float | None = None,
) -> APIError:
    """The APIError subclass for `status_code`, carrying the API's code, message and details."""
    cls = _BY_STATUS.get(status_code, APIError)
    return cls(status_code, code, message, details, retry_after=retry_after)


def raise_for_error(response: httpx.Response) -> None:
    """Raise the APIError (code, message, details) of an error response; nothing below 400."""
    from embedtune_client.retry import retry_after_seconds  # retry imports this module

    if response.status_code < 400:
        return
    response.read()
    code, message, details = f"http_{response.status_code}", response.reason_phrase, None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    elif response.text:
        message = response.text[:500]
    raise api_error(
        response.status_code, code, message, details, retry_after=retry_after_seconds(response)
    )


class ConnectionFailed(EmbedtuneError):
    """The API could not be reached (after the client's retries, where retrying was safe)."""


class ChecksumMismatch(EmbedtuneError):
    """A downloaded model archive's SHA-256 differs from the one the API announced. Nothing is
    kept: the partial download is removed."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class JobFailed(EmbedtuneError):
    """A waited-for job ended without succeeding. `code` is the job's error code (e.g.
    `model_not_found`, `timeout`), `message` its message, `job` the finished job."""

    def __init__(self, job: Job, code: str, message: str) -> None:
        super().__init__(f"job {job.id} {job.status}: {code}: {message}")
        self.job = job
        self.code = code
        self.message = message


class JobCancelled(JobFailed):
    """A waited-for job was cancelled; `code` is `cancelled`."""


class WaitTimeout(EmbedtuneError):
    """`jobs.wait(..., timeout=...)` ran out of time; the job goes on."""
