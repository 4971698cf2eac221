"""`embedtune datasets ...` and `embedtune jobs ...`: the API through embedtune_client, for
people (tables, a live progress bar) and scripts (`--json`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel

if TYPE_CHECKING:
    # At run time only inside the commands: `embedtune api` (app.cli) loads this module too,
    # and the client with httpx adds ~0.3 s to the API's start.
    from embedtune_client import Client, Job

# Exit statuses of the commands that talk to the API (2 is click's usage error).
EXIT_API_ERROR = 1
EXIT_JOB_FAILED = 3
EXIT_JOB_CANCELLED = 4

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def api_client(ctx: click.Context) -> Client:
    """The Client for the global --url/--api-key (closed with the command)."""
    from embedtune_client import Client

    target = ctx.find_root().obj or {}
    client = Client(url=target.get("url"), api_key=target.get("api_key") or "")
    ctx.call_on_close(client.close)
    return client


def _emit(value: Any) -> None:
    """One JSON document on one line (pipe to jq to read it)."""
    if isinstance(value, BaseModel):
        click.echo(value.model_dump_json())
    elif isinstance(value, list):
        click.echo(json.dumps([v.model_dump(mode="json") for v in value]))
    else:
        click.echo(json.dumps(value))


def handles_api_errors(command: F) -> F:
    """Turn the client's errors into a message (or JSON error body) and an exit status:
    1 for API and connection errors, 3 for a failed job, 4 for a cancelled one."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from embedtune_client import APIError, EmbedtuneError, JobCancelled, JobFailed

        as_json = bool(kwargs.get("as_json"))
        try:
            return command(*args, **kwargs)
        except JobFailed as exc:
            if as_json:
                _emit(exc.job)
            click.echo(f"job {exc.job.id} {exc.job.status}: {exc.code}: {exc.message}", err=True)
            raise SystemExit(
                EXIT_JOB_CANCELLED if isinstance(exc, JobCancelled) else EXIT_JOB_FAILED
            ) from None
        except APIError as exc:
            if as_json:
                body = {"code": exc.code, "message": exc.message, "details": exc.details}
                _emit({"error": body})
            details = f" {json.dumps(exc.details)}" if exc.details else ""
            click.echo(f"error: {exc.code}: {exc.message}{details}", err=True)
            raise SystemExit(EXIT_API_ERROR) from None
        except EmbedtuneError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_API_ERROR) from None

    return wrapper  # type: ignore[return-value]


def _dataset_arg(value: str | None) -> Any:
    """--train/--test/...: a dataset id, a local file (uploaded by the client), or a Hub
    reference as a JSON object ({"hub": "org/name", "split": "train"})."""
    if value is not None and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"not a JSON object: {exc}") from None
    return value


def _settings(values: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value pairs; values are JSON when they parse (64, 2e-5, null, true), else
    strings (bf16)."""
    found: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--set")
        try:
            found[key.strip()] = json.loads(raw)
        except ValueError:
            found[key.strip()] = raw
    return found


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


# --- datasets ---------------------------------------------------------------------------------


@click.group()
def datasets() -> None:
    """Upload, list and delete datasets (through the API: --url, --api-key)."""


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Dataset name [default: the file name].")
@click.option(
    "--column-mapping",
    default=None,
    help='JSON object role -> your column, e.g. \'{"anchor": "query"}\'.',
)
@json_option
@click.pass_context
@handles_api_errors
def datasets_upload(
    ctx: click.Context, file: Path, name: str | None, column_mapping: str | None, as_json: bool
) -> None:
    """Upload FILE (JSONL, CSV or Parquet); prints the dataset id."""
    mapping = None
    if column_mapping is not None:
        try:
            mapping = json.loads(column_mapping)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--column-mapping") from None
    dataset = api_client(ctx).datasets.upload(file, name=name, column_mapping=mapping)
    if as_json:
        _emit(dataset)
    else:
        click.echo(f"{dataset.id}  {dataset.name}  {dataset.kind}, {dataset.rows} rows")


@datasets.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@json_option
@click.pass_context
@handles_api_errors
def datasets_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """The team's datasets, newest first, a page at a time (like `jobs list`)."""
    page = api_client(ctx).datasets.page(limit=limit, cursor=cursor)
    if as_json:
        _emit(page)
        return
    click.echo(f"{'id':<27} {'kind':<8} {'rows':>8} {'created':<16} name")
    for d in page.data:
        click.echo(f"{d.id:<27} {d.kind:<8} {d.rows:>8} {_when(d.created_at):<16} {d.name}")
    if page.has_more:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@datasets.command("delete")
@click.argument("dataset_id")
@json_option
@click.pass_context
@handles_api_errors
def datasets_delete(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """Delete a dataset and its stored file. Refused (dataset_in_use, exit 1) while a queued or
    running job uses it."""
    api_client(ctx).datasets.delete(dataset_id)
    if as_json:
        _emit({"dataset": dataset_id, "deleted": True})
    else:
        click.echo(f"{dataset_id}: deleted")


# --- jobs -------------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """Create, follow, cancel, download and delete fine-tuning jobs (through the API: --url,
    --api-key). Exit status: 0 done, 1 API or connection error, 3 job failed, 4 job
    cancelled."""


@jobs.command("create")
@click.option("--base-model", required=True, help="Hub id or a model folder name on the server.")
@click.option("--train", "train", required=True, help="Dataset id, local file, or Hub JSON.")
@click.option("--test", "test", default=None, help="Test triplets: id, file or Hub JSON.")
@click.option("--eval", "eval_", default=None, help="Eval triplets: id, file or Hub JSON.")
@click.option("--sts", default=None, help="STS pairs: id, file or Hub JSON.")
@click.option("--name", default=None, help="A name for the job.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A hyperparameter, e.g. --set batch_size=64 --set max_steps=100 (repeatable).",
)
@click.option("--gpu-type", default=None, help="Run on workers of this GPU type only.")
@click.option(
    "--gpus",
    type=click.IntRange(1),
    default=None,
    help="GPUs of one worker to train on (batch_size stays the global batch) [default: 1].",
)
@click.option("--wait", is_flag=True, help="Follow the job until it finishes.")
@json_option
@click.pass_context
@handles_api_errors
def jobs_create(
    ctx: click.Context,
    base_model: str,
    train: str,
    test: str | None,
    eval_: str | None,
    sts: str | None,
    name: str | None,
    settings: tuple[str, ...],
    gpu_type: str | None,
    gpus: int | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Create a job; a local file given as a dataset is uploaded first. Prints the job id (or,
    with --wait, follows it and exits with its outcome)."""
    from app.cli_watch import follow

    client = api_client(ctx)
    job = client.jobs.create(
        base_model=base_model,
        train_dataset=_dataset_arg(train),
        test_dataset=_dataset_arg(test),
        eval_dataset=_dataset_arg(eval_),
        sts_dataset=_dataset_arg(sts),
        hyperparameters=_settings(settings) or None,
        name=name,
        resources={
            key: value
            for key, value in (("gpu_type", gpu_type), ("gpus", gpus))
            if value is not None
        }
        or None,
    )
    if not wait:
        if as_json:
            _emit(job)
        else:
            click.echo(job.id)
    elif as_json:  # only the finished job: one document a script can parse
        _emit(client.jobs.wait(job.id))
    else:
        click.echo(f"created {job.id}", err=True)
        _summary(follow(client, job.id, as_json=False))


@jobs.command("list")
@click.option(
    "--status",
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    default=None,
)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@json_option
@click.pass_context
@handles_api_errors
def jobs_list(
    ctx: click.Context, status: Any, limit: int, cursor: str | None, as_json: bool
) -> None:
    """The team's jobs, newest first."""
    page = api_client(ctx).jobs.list(status=status, limit=limit, cursor=cursor)
    if as_json:
        _emit(page)
        return
    click.echo(f"{'id':<28} {'status':<10} {'progress':<12} {'created':<16} base model / name")
    for j in page.data:
        progress = f"{j.progress.step}/{j.progress.total_steps}" if j.progress else "-"
        label = j.base_model + (f" / {j.name}" if j.name else "")
        click.echo(f"{j.id:<28} {j.status:<10} {progress:<12} {_when(j.created_at):<16} {label}")
    if page.has_more:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@jobs.command("get")
@click.argument("job_id")
@json_option
@click.pass_context
@handles_api_errors
def jobs_get(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """One job: status, progress, metrics, error, model."""
    job = api_client(ctx).jobs.get(job_id)
    if as_json:
        _emit(job)
    else:
        _summary(job)


@jobs.command("watch")
@click.argument("job_id")
@click.option("--poll-interval", type=float, default=2.0, show_default=True, hidden=True)
@json_option
@click.pass_context
@handles_api_errors
def jobs_watch(ctx: click.Context, job_id: str, poll_interval: float, as_json: bool) -> None:
    """Follow a job live: a progress bar (step/total, loss, ETA, phase) and eval points as they
    arrive; --json prints one JSON line per event or progress update ({"item": "event" |
    "progress", ...}), then the finished job. Exits 0 when the job succeeds, 3 (failed) or 4
    (cancelled) with its error code otherwise."""
    from app.cli_watch import follow

    job = follow(api_client(ctx), job_id, as_json=as_json, poll_interval=poll_interval)
    if as_json:
        _emit(job)
    else:
        _summary(job)


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@click.pass_context
@handles_api_errors
def jobs_cancel(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    job = api_client(ctx).jobs.cancel(job_id)
    if as_json:
        _emit(job)
    else:
        click.echo(f"{job.id}: {job.status}, cancel requested")


@jobs.command("download")
@click.argument("job_id")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to put the model in (made if missing).",
)
@click.option("--no-extract", is_flag=True, help="Keep the .tar.gz instead of extracting it.")
@json_option
@click.pass_context
@handles_api_errors
def jobs_download(
    ctx: click.Context, job_id: str, out: Path, no_extract: bool, as_json: bool
) -> None:
    """Download the fine-tuned model of a succeeded job, checking its SHA-256."""
    path = api_client(ctx).jobs.download(job_id, out, extract=not no_extract)
    if as_json:
        _emit({"job": job_id, "path": str(path.resolve()), "extracted": not no_extract})
    else:
        click.echo(str(path))


@jobs.command("delete")
@click.argument("job_id")
@json_option
@click.pass_context
@handles_api_errors
def jobs_delete(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Delete a finished job with its timeline, metrics and stored model. Refused (job_active,
    exit 1) while it is queued or running: cancel it first."""
    api_client(ctx).jobs.delete(job_id)
    if as_json:
        _emit({"job": job_id, "deleted": True})
    else:
        click.echo(f"{job_id}: deleted")


def _summary(job: Job) -> None:
    lines = [f"{job.id}  {job.status}  {job.base_model}" + (f"  ({job.name})" if job.name else "")]
    if job.progress:
        p = job.progress
        loss = "-" if p.loss is None else f"{p.loss:.4f}"
        lines.append(f"  progress: step {p.step}/{p.total_steps}, epoch {p.epoch:.2f}, loss {loss}")
    if job.phase and not job.finished:
        eta = job.progress.eta_s if job.progress else None
        left = f", about {eta:.0f} s of training left" if eta else ""
        lines.append(f"  phase: {job.phase}{left}")
    if job.timings:
        t = job.timings
        lines.append(
            f"  time: queued {t.queued_s:.1f} s, loading {t.loading_s:.1f} s, evaluating base "
            f"{t.evaluating_base_s:.1f} s, training {t.training_s:.1f} s, evaluating "
            f"{t.evaluating_s:.1f} s, saving {t.saving_s:.1f} s"
        )
    if job.throughput:
        lines.append(f"  throughput: {job.throughput:.1f} training samples/s")
    if job.metrics:
        base = job.metrics.get("base") or {}
        tuned = job.metrics.get("fine_tuned") or {}
        for key in ("cosine_accuracy", "max_accuracy"):
            if key in base and key in tuned:
                lines.append(f"  {key}: {base[key]:.4f} -> {tuned[key]:.4f}")
    if job.error:
        lines.append(f"  error: {job.error.code}: {job.error.message}")
    if job.model:
        lines.append(f"  model: {job.model.size_bytes} bytes, sha256 {job.model.sha256}")
    click.echo("\n".join(lines))
