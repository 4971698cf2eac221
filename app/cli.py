"""`embedtune`: api, worker, migrate, and `local`, the all-in-one mode for one machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click


@click.group()
def main() -> None:
    """Embedtune: fine-tune sentence-transformer embedding models over a REST API."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="API processes.")
def api(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API."""
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)


@main.command()
@click.option("--concurrency", type=int, default=None, help="Jobs at once on this host.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int | None, loglevel: str) -> None:
    """Run a Celery worker that trains jobs, one job per child process."""
    from app.settings import get_settings
    from worker.celery_app import celery_app

    settings = get_settings()
    argv = [
        "worker",
        f"--queues={settings.queue}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        "--pool=prefork",
        "--prefetch-multiplier=1",
        "--max-tasks-per-child=1",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    celery_app.worker_main(argv=argv)


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
    worker_proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--concurrency=1"], env=env
    )
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


if __name__ == "__main__":
    main()
