"""`embedtune jobs watch`: a job's live progress in the terminal (rich), or as JSON lines."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from embedtune_client import Client, Job, JobEvent, ProgressUpdate
from embedtune_client.jobs import raise_unless_succeeded
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

# The accuracies shown for an eval point, best first; others are left out to keep one line.
_EVAL_KEYS = ("loss", "cosine_accuracy", "max_accuracy")


def _eval_line(event: JobEvent) -> str:
    metrics: dict[str, Any] = event.data.get("metrics") or {}
    parts = []
    for key in _EVAL_KEYS:
        value = metrics.get(key, metrics.get(f"eval_{key}"))
        if isinstance(value, int | float):
            parts.append(f"{key} {value:.4f}")
    return f"eval at step {event.data.get('step', '?')}: " + (", ".join(parts) or "done")


def _event_line(event: JobEvent) -> str | None:
    data = event.data
    if event.type == "evaluated":
        return _eval_line(event)
    if event.type == "started":
        resumed = data.get("resumed_from_step")
        return f"started (attempt {event.attempt})" + (
            f", resuming from step {resumed}" if resumed else ""
        )
    if event.type == "retried":
        return f"retried: {data.get('reason', '?')} at step {data.get('step', '?')}"
    if event.type == "checkpoint_saved":
        return f"checkpoint at step {data.get('step', '?')}"
    if event.type in {"queued", "cancel_requested"}:
        return event.type.replace("_", " ")
    return None  # terminal events: the summary after the bar says it


def _eta(seconds: float | None) -> str:
    """The server's estimate of the training time left (from its observed step rate)."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def follow(client: Client, job_id: str, *, as_json: bool, poll_interval: float = 2.0) -> Job:
    """Show the job's events and progress until it finishes; returns the finished job (raises
    JobFailed / JobCancelled like `jobs.wait`). JSON mode prints one line per stream item on
    stdout: {"item": "event" | "progress", ...}."""
    if as_json:
        for item in client.jobs.stream(job_id, poll_interval=poll_interval):
            kind = "progress" if isinstance(item, ProgressUpdate) else "event"
            click.echo(json.dumps({"item": kind, **item.model_dump(mode="json")}))
    else:
        _show(client, job_id, poll_interval)
    job = client.jobs.get(job_id)
    while not job.finished:  # the row may trail its terminal event by a moment
        time.sleep(0.2)
        job = client.jobs.get(job_id)
    return raise_unless_succeeded(job)


def _show(client: Client, job_id: str, poll_interval: float) -> None:
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.fields[phase]:<15}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console) as bar:
        task: TaskID = bar.add_task(job_id, total=None, phase="queued", loss="-", eta="-")
        for item in client.jobs.stream(job_id, poll_interval=poll_interval):
            if isinstance(item, ProgressUpdate):
                progress = item.progress
                phase = (progress.phase if progress else None) or item.status
                if progress is None:
                    bar.update(task, phase=phase)
                else:
                    loss = "-" if progress.loss is None else f"{progress.loss:.4f}"
                    bar.update(
                        task,
                        total=progress.total_steps,
                        completed=progress.step,
                        phase=phase,
                        loss=loss,
                        eta=_eta(progress.eta_s),
                    )
            else:
                line = _event_line(item)
                if line:
                    bar.console.print(f"[dim]{item.at:%H:%M:%S}[/dim] {line}")
                if item.terminal:
                    bar.update(task, phase=item.type)
