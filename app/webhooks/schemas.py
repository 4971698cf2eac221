"""Request and response shapes of /webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.webhooks.urls import MAX_URL_LENGTH, check_syntax

WebhookEventName = Literal[
    "job.queued",
    "job.started",
    "job.progress",
    "job.evaluated",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "job.retried",
]
EVENT_NAMES: tuple[str, ...] = WebhookEventName.__args__  # type: ignore[attr-defined]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/embedtune",
                    "events": ["job.succeeded", "job.failed"],
                }
            ]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="Where the events are POSTed: an http or https URL whose host resolves to "
        "public addresses only (loopback, link-local and private ranges are refused unless the "
        "operator set EMBEDTUNE_WEBHOOK_ALLOW_PRIVATE_URLS=1).",
        examples=["https://hooks.example.com/embedtune"],
    )
    events: list[WebhookEventName] = Field(
        min_length=1,
        max_length=len(EVENT_NAMES),
        description="The events to send: job.queued, job.started, job.progress (at most one "
        "per job every EMBEDTUNE_WEBHOOK_PROGRESS_INTERVAL_S), job.evaluated, job.succeeded, "
        "job.failed, job.cancelled, job.retried.",
        examples=[["job.succeeded", "job.failed"]],
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_syntax(value)
        return value

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class WebhookRead(BaseModel):
    id: str = Field(examples=["wh_0123456789abcdef01234567"])
    url: str = Field(examples=["https://hooks.example.com/embedtune"])
    events: list[WebhookEventName] = Field(examples=[["job.succeeded", "job.failed"]])
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret (Standard Webhooks, `whsec_` + base64): shown in this "
        "response only. Verify each request's `webhook-signature` with it.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookList(BaseModel):
    data: list[WebhookRead]


class WebhookDeliveryRead(BaseModel):
    id: str = Field(
        description="The message id, sent as the `webhook-id` header (the same on every "
        "retry: deduplicate on it).",
        examples=["msg_0123456789abcdef01234567"],
    )
    type: WebhookEventName = Field(examples=["job.succeeded"])
    job_id: str = Field(examples=["job_0123456789abcdef01234567"])
    status: DeliveryStatus = Field(
        description="pending (not yet delivered; retried with backoff), delivered (a 2xx "
        "answer), failed (retried for EMBEDTUNE_WEBHOOK_RETRY_FOR_S without success).",
        examples=["delivered"],
    )
    attempts: int = Field(description="Attempts made so far.", examples=[1])
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due (pending deliveries only)."
    )
    last_status_code: int | None = Field(
        description="HTTP status of the last attempt; null when it got no answer.",
        examples=[200],
    )
    last_error: str | None = Field(
        description="Why the last attempt failed, when it did.", examples=["HTTP 503"]
    )
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryRead]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page.")
