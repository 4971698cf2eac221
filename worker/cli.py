"""`embedtune worker`: the Celery worker that trains jobs. Registered with `embedtune` through
the `embedtune.commands` entry point, so an API install without worker/ has no such command and
app/ never imports worker/."""

from __future__ import annotations

import os

import click

from app.settings import Settings


def visible_cuda_devices() -> int:
    """CUDA devices this process may use (CUDA_VISIBLE_DEVICES applied); 0 without CUDA.

    torch counts through NVML when it can, which leaves CUDA uninitialised: the pool processes
    forked later can still use the GPUs."""
    import torch

    return int(torch.cuda.device_count())


def resolve_hardware(
    settings: Settings, gpu_type: str | None, gpus: int | None
) -> tuple[str | None, int]:
    """The worker's GPU type and device count: the options, else the settings, else no type and
    the visible CUDA devices (1 without CUDA). ClickException for a type the deployment does not
    name (EMBEDTUNE_GPU_TYPES, when set) or more devices than CUDA shows."""
    from app.routing import check_gpu_type

    gpu_type = gpu_type or settings.worker_gpu_type or None
    if gpu_type is not None:
        try:
            check_gpu_type(gpu_type)
        except ValueError as exc:
            raise click.ClickException(f"--gpu-type: {exc}") from None
        if settings.gpu_types and gpu_type not in settings.gpu_types:
            raise click.ClickException(
                f"--gpu-type: {gpu_type!r} is not one of this deployment's GPU types "
                f"(EMBEDTUNE_GPU_TYPES={','.join(settings.gpu_types)}); no job would ask for it"
            )
    gpus = gpus or settings.worker_gpus
    visible = visible_cuda_devices()
    if gpus is None:
        return gpu_type, max(visible, 1)
    if visible and gpus > visible:
        raise click.ClickException(
            f"--gpus: {gpus} devices asked for, but CUDA shows {visible} "
            "(check CUDA_VISIBLE_DEVICES)"
        )
    # Without CUDA any count goes: a job on N devices runs N CPU processes (gloo).
    return gpu_type, gpus


@click.command()
@click.option("--concurrency", type=int, default=None, help="Jobs at once on this host.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--gpu-type",
    default=None,
    help="This worker's GPU type, one of EMBEDTUNE_GPU_TYPES: it also takes the jobs asking for "
    "that type [env EMBEDTUNE_WORKER_GPU_TYPE; default: none, only jobs of any type].",
)
@click.option(
    "--gpus",
    type=click.IntRange(min=1),
    default=None,
    help="Devices this worker has: it takes jobs asking for up to this many "
    "[env EMBEDTUNE_WORKER_GPUS; default: the visible CUDA devices, 1 without CUDA].",
)
def worker(concurrency: int | None, loglevel: str, gpu_type: str | None, gpus: int | None) -> None:
    """Run a Celery worker that trains jobs, one job per child process, taking jobs from the
    queues its GPU type and device count can serve."""
    from app.routing import queues_for_worker
    from app.settings import get_settings

    settings = get_settings()
    gpu_type, gpus = resolve_hardware(settings, gpu_type, gpus)
    # The pool processes, the heartbeat and the job's own process read what was chosen here.
    os.environ["EMBEDTUNE_WORKER_GPUS"] = str(gpus)
    os.environ["EMBEDTUNE_WORKER_GPU_TYPE"] = gpu_type or ""
    get_settings.cache_clear()
    queues = queues_for_worker(gpu_type, gpus, settings.queue)

    from worker.celery_app import celery_app

    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        "--pool=prefork",
        "--prefetch-multiplier=1",
        "--max-tasks-per-child=1",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        # Unique per process: a job records the node running it, and a node shutting down asks
        # exactly its own jobs to hand themselves back.
        f"--hostname=embedtune-{os.getpid()}@%h",
    ]
    click.echo(
        f"worker: gpu_type {gpu_type or '(none)'}, {gpus} device(s); queues {', '.join(queues)}",
        err=True,
    )
    celery_app.worker_main(argv=argv)


if __name__ == "__main__":
    worker()
