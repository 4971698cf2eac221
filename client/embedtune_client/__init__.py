"""Python client of the Embedtune API (httpx and pydantic only).

>>> from embedtune_client import Client
>>> api = Client()  # EMBEDTUNE_URL, EMBEDTUNE_API_KEY
>>> job = api.jobs.create(base_model="all-MiniLM-L6-v2", train_dataset="train.jsonl",
...                       hyperparameters={"batch_size": 64})
>>> api.jobs.wait(job.id)
>>> api.jobs.download(job.id, "model")

Synchronous only: the API is driven by a few requests and one long stream per job, which a
thread handles well; an async variant would duplicate every method for no new capability.
"""

from embedtune_client.client import DEFAULT_URL, Client
from embedtune_client.errors import (
    APIError,
    AuthenticationError,
    ChecksumMismatch,
    ConflictError,
    ConnectionFailed,
    EmbedtuneError,
    JobCancelled,
    JobFailed,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    ValidationError,
    WaitTimeout,
)
from embedtune_client.models import (
    Dataset,
    DatasetList,
    Job,
    JobEvent,
    JobList,
    JobMetrics,
    JobQueue,
    JobResources,
    JobTimings,
    Progress,
    ProgressUpdate,
    StreamItem,
)
from embedtune_client.retry import RetryPolicy

__all__ = [
    "DEFAULT_URL",
    "APIError",
    "AuthenticationError",
    "ChecksumMismatch",
    "Client",
    "ConflictError",
    "ConnectionFailed",
    "Dataset",
    "DatasetList",
    "EmbedtuneError",
    "Job",
    "JobCancelled",
    "JobEvent",
    "JobFailed",
    "JobList",
    "JobMetrics",
    "JobQueue",
    "JobResources",
    "JobTimings",
    "NotFoundError",
    "Progress",
    "ProgressUpdate",
    "RateLimitedError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "StreamItem",
    "ValidationError",
    "WaitTimeout",
]
