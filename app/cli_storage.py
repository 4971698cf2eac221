"""`embedtune storage copy`: move a deployment's datasets, models and checkpoints into a new store
(app.storage.copy does the work; this prints it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from app.storage.copy import CopyReport, ObjectResult

EXIT_INCOMPLETE = 1  # something the database refers to is missing, corrupt or failed to copy


@click.group()
def storage() -> None:
    """The object store holding datasets, checkpoints and models (EMBEDTUNE_STORAGE_URL)."""


@storage.command("copy")
@click.option(
    "--to",
    "to_url",
    required=True,
    help="The new store: s3://bucket[/prefix] or file:///abs/path.",
)
@click.option(
    "--from",
    "from_url",
    default=None,
    help="The store to copy from [default: EMBEDTUNE_STORAGE_URL, else file://<data dir>].",
)
@click.option("--dry-run", is_flag=True, help="Say what would be copied; write nothing.")
@click.pass_context
def copy(ctx: click.Context, to_url: str, from_url: str | None, dry_run: bool) -> None:
    """Copy every object the database refers to into the store at --to.

    That is every dataset's file, every succeeded job's model and the checkpoints of queued and
    running jobs. Each copy is checked: against the sha256 the database recorded (a source that
    differs is reported corrupt and not copied), and by reading the new object back. Objects the
    destination already holds with the same size and sha256 are skipped, so running it again
    copies only what is not there yet. Nothing is deleted from the source.

    EMBEDTUNE_S3_ENDPOINT_URL applies to whichever side is s3:// (two S3 stores on different
    endpoints are not supported); AWS credentials come from the usual environment and
    credential chain. Exit status 0 when every object is in the destination, 1 otherwise.
    """
    from app.cli import require_database
    from app.db.session import unit_of_work
    from app.settings import get_settings
    from app.storage import StorageError, store_from_url
    from app.storage.copy import copy_recorded, recorded_objects

    require_database()
    settings = get_settings()
    source_url = from_url or settings.resolved_storage_url
    try:
        source = store_from_url(source_url, settings.s3_endpoint_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--from / EMBEDTUNE_STORAGE_URL") from None
    try:
        destination = store_from_url(to_url, settings.s3_endpoint_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    if source.location == destination.location:
        raise click.BadParameter(f"it is the source store ({source.location})", param_hint="--to")

    click.echo(f"{'dry run: ' if dry_run else ''}{source.location} -> {destination.location}")
    try:
        if not dry_run:
            destination.check()  # before anything else: a wrong bucket or no credentials
        with unit_of_work() as session:
            objects = recorded_objects(session, source)
        report = copy_recorded(
            objects, source, destination, dry_run=dry_run, on_result=_print_result
        )
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    _print_summary(report, to_url)
    ctx.exit(0 if report.ok else EXIT_INCOMPLETE)


def _print_result(result: ObjectResult) -> None:
    obj = result.obj
    line = f"{result.outcome.value:<13} {obj.kind.value:<10} {obj.owner:<28} {obj.key}"
    if result.size:
        line += f" ({_size(result.size)})"
    if result.detail:
        line += f"  {result.detail}"
    click.echo(line, err=not result.outcome.ok)


def _print_summary(report: CopyReport, to_url: str) -> None:
    from app.storage.copy import Outcome

    moved = Outcome.WOULD_COPY if report.dry_run else Outcome.COPIED
    counts = [
        f"{moved.value.replace('_', ' ')} {report.count(moved)} "
        f"({_size(report.total_bytes(moved))})",
        f"already there {report.count(Outcome.ALREADY_THERE)} "
        f"({_size(report.total_bytes(Outcome.ALREADY_THERE))})",
        *(
            f"{outcome.value} {report.count(outcome)}"
            for outcome in (Outcome.MISSING, Outcome.CORRUPT, Outcome.FAILED)
        ),
    ]
    click.echo(", ".join(counts))
    if report.unreferenced:
        click.echo(
            f"{report.unreferenced} object(s) in the source belong to no dataset or job on record "
            f"(deleted, failed or cancelled jobs' leftovers): not copied"
        )
    if not report.ok:
        click.echo(
            "Not complete: the objects listed above as missing, corrupt or failed are not in the "
            "destination. Restore them in the source (or accept their loss) and run the command "
            "again: it copies only what is not there yet.",
            err=True,
        )
    elif report.dry_run:
        click.echo("Dry run: nothing was written.")
    else:
        click.echo(
            f"Next: stop the API and the workers, run this command once more (it copies only "
            f"what changed meanwhile), then set EMBEDTUNE_STORAGE_URL={to_url} on every API and "
            f"worker process and start them. The source is left as it was."
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
