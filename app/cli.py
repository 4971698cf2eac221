"""`embedtune`: api, migrate, keys and `local` (the all-in-one mode for one machine) on the
server, `worker` where worker/ is installed (worker.cli, through the `embedtune.commands` entry
point); `datasets` and `jobs` (app.cli_remote) anywhere, through the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from app.cli_remote import datasets, jobs
from app.cli_storage import storage

DEFAULT_API_URL = "http://127.0.0.1:8000"


@click.group()
@click.option(
    "--url",
    envvar="EMBEDTUNE_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    help="The API the datasets and jobs commands talk to [env EMBEDTUNE_URL].",
)
@click.option(
    "--api-key",
    envvar="EMBEDTUNE_API_KEY",
    default=None,
    help="Your team's API key, for the datasets and jobs commands [env EMBEDTUNE_API_KEY].",
)
@click.pass_context
def main(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Embedtune: fine-tune sentence-transformer embedding models over a REST API."""
    from app.settings import PRIVATE_UMASK

    # Every file an Embedtune command makes (database, datasets, checkpoints, archives) is the
    # service user's alone; the processes it starts inherit the umask.
    os.umask(PRIVATE_UMASK)
    ctx.obj = {"url": url, "api_key": api_key}


main.add_command(datasets)
main.add_command(jobs)
main.add_command(storage)


def _add_installed_commands() -> None:
    # Commands other parts of the install provide, `worker` (worker.cli) above all: the API
    # image ships no worker/, and then simply has no `worker` command.
    for entry in entry_points(group="embedtune.commands"):
        try:
            command = entry.load()
        except ModuleNotFoundError as exc:
            package = entry.value.split(":", 1)[0].split(".", 1)[0]
            if exc.name is not None and exc.name.split(".", 1)[0] == package:
                continue  # declared by the package metadata, not shipped in this image
            raise
        main.add_command(command, entry.name)


_add_installed_commands()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="API processes.")
def api(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API."""
    import uvicorn

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes answer /metrics: they must share their counts (prometheus-client's
        # multiprocess mode), in a folder that is empty at start.
        import shutil

        from app.settings import get_settings

        folder = get_settings().data_dir / "prometheus-multiproc"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder.resolve())
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)


@main.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option("--downgrade", "downgrade_to", default=None, help="Downgrade to this revision.")
def migrate(revision: str, downgrade_to: str | None) -> None:
    """Bring the database schema up to date (Alembic)."""
    from app import migrations

    if downgrade_to:
        migrations.downgrade(revision=downgrade_to)
    else:
        migrations.upgrade(revision=revision)
    click.echo("database schema is up to date" if not downgrade_to else "downgraded")


@main.group()
def keys() -> None:
    """Teams' API keys: create (shown once), list, revoke. Uses the configured database."""
    require_database()


def require_database() -> None:
    """Refuse, naming the settings, when no database is configured: no EMBEDTUNE_DATABASE_URL
    and no SQLite file in the data dir yet. Connecting would create an empty SQLite file (and
    the data dir) wherever the command runs, then fail on the missing tables."""
    from app.settings import get_settings

    settings = get_settings()
    if settings.database_url:
        return
    sqlite_file = settings.data_dir / "embedtune.db"
    if not sqlite_file.is_file():
        raise click.ClickException(
            f"no database configured: EMBEDTUNE_DATABASE_URL is not set and there is no "
            f"SQLite database at {sqlite_file.resolve()} (EMBEDTUNE_DATA_DIR, default "
            f"./embedtune-data). Set EMBEDTUNE_DATABASE_URL to the deployment's database, or "
            f"EMBEDTUNE_DATA_DIR to the data dir of a local install, or create the SQLite "
            f"database with `embedtune migrate`."
        )


def _team_name(_: click.Context, __: click.Parameter, value: str) -> str:
    import re

    from app.auth.schemas import TEAM_NAME_MAX, TEAM_NAME_PATTERN

    if len(value) > TEAM_NAME_MAX or not re.fullmatch(TEAM_NAME_PATTERN, value):
        raise click.BadParameter(
            f"letters, digits, '.', '_' and '-', at most {TEAM_NAME_MAX} characters"
        )
    return value


@keys.command("create")
@click.option("--team", required=True, callback=_team_name, help="Team name; made if missing.")
def keys_create(team: str) -> None:
    """Create an API key for TEAM (and the team, if new). Prints the key once, on stdout."""
    from app.auth import service
    from app.db.session import unit_of_work

    with unit_of_work() as session:
        row, made = service.ensure_team(session, team)
        created = service.create_key(session, row)
    click.echo(
        f"{'created team' if made else 'team'} {row.name} ({row.id}); key {created.row.id} "
        f"({created.row.prefix}...). The key is shown only now; only its hash is stored.",
        err=True,
    )
    click.echo(created.key)


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke KEY: a key id (key_...) or a prefix (et_...), never the whole key."""
    from app.auth import service
    from app.db.session import unit_of_work
    from app.errors import NotFound, ValidationFailed

    with unit_of_work() as session:
        try:
            row = service.revoke_key(session, service.find_key(session, key))
        except (NotFound, ValidationFailed) as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"revoked {row.id} ({row.prefix}...) at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@keys.command("list")
@click.option("--team", default=None, help="Only this team's keys.")
def keys_list(team: str | None) -> None:
    """List keys: id, prefix, team, created, last used, revoked. Never a whole key."""
    from app.auth import service
    from app.db.session import unit_of_work

    with unit_of_work() as session:
        teams = {t.id: t.name for t in service.list_teams(session)}
        team_id = None
        if team is not None:
            team_id = next((i for i, n in teams.items() if n == team), None)
            if team_id is None:
                raise click.ClickException(f"no team named '{team}'")
        rows = service.list_keys(session, team_id)

    def when(value: object) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"

    click.echo(f"{'id':<29} {'prefix':<12} {'team':<20} {'created':<16} {'last used':<16} revoked")
    for r in rows:
        click.echo(
            f"{r.id:<29} {r.prefix:<12} {teams.get(r.team_id, r.team_id):<20} "
            f"{when(r.created_at):<16} {when(r.last_used_at):<16} {when(r.revoked_at)}"
        )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where datasets, models and the SQLite database live "
    "[default: EMBEDTUNE_DATA_DIR or ./embedtune-data].",
)
def local(host: str, port: int, data_dir: Path | None) -> None:
    """API and a worker on this machine: SQLite and a folder as the broker, no servers needed."""
    data_dir = (data_dir or Path(os.environ.get("EMBEDTUNE_DATA_DIR", "embedtune-data"))).resolve()
    models_dir = data_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    extra_dirs = os.environ.get("EMBEDTUNE_MODEL_DIRS", "")
    env = {
        **os.environ,
        "EMBEDTUNE_DATA_DIR": str(data_dir),
        "EMBEDTUNE_DATABASE_URL": f"sqlite:///{data_dir / 'embedtune.db'}",
        "EMBEDTUNE_BROKER_URL": f"filesystem://{data_dir / 'broker'}",
        "EMBEDTUNE_MODEL_DIRS": ":".join(p for p in (str(models_dir), extra_dirs) if p),
    }
    os.environ.update(env)  # this process serves the API with the same settings

    from app import migrations

    migrations.upgrade(url=env["EMBEDTUNE_DATABASE_URL"])
    _local_key_banner(data_dir, host, port, env["EMBEDTUNE_DATABASE_URL"])
    # By module, not through the `embedtune.commands` entry point: no package metadata needed.
    worker_proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "--concurrency=1"], env=env)
    click.echo(
        f"Embedtune local mode\n"
        f"  API:        http://{host}:{port}  (OpenAPI docs at /docs)\n"
        f"  data dir:   {data_dir}\n"
        f"  model dirs: {env['EMBEDTUNE_MODEL_DIRS']}  (a sub-folder name is a base_model)\n"
        f"  worker pid: {worker_proc.pid}\n"
        f"Stop with Ctrl-C.",
        err=True,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit lets the
    # finally block below stop the worker instead of leaving it orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        import uvicorn

        uvicorn.run("app.main:create_app", factory=True, host=host, port=port)
    finally:
        if worker_proc.poll() is None:
            worker_proc.send_signal(signal.SIGTERM)
            try:
                worker_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker_proc.kill()


def _local_key_banner(data_dir: Path, host: str, port: int, database_url: str) -> None:
    """Make the local team's key on first start and say how to use it; later, say where it is."""
    from app.auth.local import ensure_local_key
    from app.db.session import unit_of_work

    with unit_of_work() as session:
        local = ensure_local_key(session, data_dir)
    new_key = f"EMBEDTUNE_DATABASE_URL={database_url} embedtune keys create --team {local.team}"
    if local.key is not None:
        click.echo(
            f"Created team '{local.team}' and its API key (saved, readable only by you, in "
            f"{local.path}):\n\n"
            f"  export EMBEDTUNE_API_KEY={local.key}\n"
            f'  curl -s -H "Authorization: Bearer $EMBEDTUNE_API_KEY" http://{host}:{port}/jobs\n',
            err=True,
        )
    elif local.file_missing:
        click.echo(
            f"Team '{local.team}' has API keys, but {local.path} is gone; make a new key with:\n"
            f"  {new_key}",
            err=True,
        )
    else:
        click.echo(
            f"API key of team '{local.team}': in {local.path}\n"
            f"  export EMBEDTUNE_API_KEY=$(cat {local.path})\n"
            f"  (another key: {new_key})",
            err=True,
        )


if __name__ == "__main__":
    main()
