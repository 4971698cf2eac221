"""`embedtune worker`'s hardware (worker.cli): options over settings over the visible CUDA
devices, refusals with a clear message; and the command reaching `embedtune` only through the
`embedtune.commands` entry point, so an install without worker/ has no `worker` command."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from app.settings import Settings
from worker import cli


@pytest.fixture(autouse=True)
def _no_embedtune_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings() below read the environment: only what each test gives counts.
    for name in [n for n in os.environ if n.startswith("EMBEDTUNE_")]:
        monkeypatch.delenv(name)


def test_without_options_or_settings_a_cpu_host_is_one_untyped_device() -> None:
    # This host has no CUDA (the test suite runs on CPU): torch counts 0 devices.
    assert cli.visible_cuda_devices() == 0
    assert cli.resolve_hardware(Settings(), None, None) == (None, 1)


def test_options_win_over_settings() -> None:
    settings = Settings(gpu_types=["a100", "h100"], worker_gpu_type="a100", worker_gpus=2)
    assert cli.resolve_hardware(settings, None, None) == ("a100", 2)
    assert cli.resolve_hardware(settings, "h100", 3) == ("h100", 3)


def test_a_type_the_deployment_does_not_name_is_refused() -> None:
    settings = Settings(gpu_types=["a100", "h100"])
    with pytest.raises(click.ClickException, match="not one of this deployment's GPU types"):
        cli.resolve_hardware(settings, "v100", None)
    with pytest.raises(click.ClickException, match="lowercase"):
        cli.resolve_hardware(settings, "H100", None)
    # A deployment that names no types lets a worker have one (no job will ask for it).
    assert cli.resolve_hardware(Settings(), "v100", 1) == ("v100", 1)


def test_more_devices_than_cuda_shows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for a host with 2 GPUs: this one has none.
    monkeypatch.setattr(cli, "visible_cuda_devices", lambda: 2)
    assert cli.resolve_hardware(Settings(), None, None) == (None, 2)
    assert cli.resolve_hardware(Settings(), None, 2) == (None, 2)
    with pytest.raises(click.ClickException, match="CUDA shows 2"):
        cli.resolve_hardware(Settings(), None, 4)


def test_without_cuda_any_device_count_goes() -> None:
    # N devices on a CPU host are N gloo processes.
    assert cli.resolve_hardware(Settings(), None, 4) == (None, 4)


def _commands(prelude: str) -> list[str]:
    script = f"{prelude}\nfrom app.cli import main\nprint(' '.join(sorted(main.commands)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.split()


def test_worker_comes_from_the_entry_point_and_is_absent_without_the_worker_package() -> None:
    assert "worker" in _commands("")
    # As in an image that ships app/ but not worker/: `import worker` fails.
    without = _commands("import sys; sys.modules['worker'] = None")
    assert "worker" not in without
    assert {"api", "migrate", "local", "keys"} <= set(without)
