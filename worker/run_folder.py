"""The folder a run on several devices shares with the process that started it (worker.launch).

It holds the pickled spec; the stop request the parent passes down; the events the main rank reports
(progress, phases, metric points, saved checkpoints: what an in-process run tells its reporters and
RunControl), which the parent persists; an acknowledgement per recorded checkpoint; and each rank's
outcome (a TrainingResult, a stop or an error). Every file is written whole (by rename) or appended
in whole lines, so a reader never acts on half of one.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.training.spec import MetricPoint, Progress, StopReason, TrainingResult, TrainingSpec

# The pid of the process that holds the attempt, given to the ranks: a rank whose parent is gone
# stops.
PARENT_PID_ENV = "EMBEDTUNE_DDP_PARENT_PID"
ACK_POLL_S = 0.05
_STOP_REASONS: tuple[StopReason, ...] = ("cancelled", "handed_back", "timeout", "lease_lost")


@dataclass(frozen=True)
class Outcome:
    """How a rank's run ended: exactly one of the three is set."""

    result: TrainingResult | None = None
    stopped: tuple[str, int, str | None] | None = None  # TrainingStopped's reason, step, checkpoint
    error: BaseException | None = None


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: Path


@dataclass(frozen=True)
class PhaseEvent:
    """The main rank's run entered `phase` (a rules.phases.Phase value)."""

    phase: str


Event = Progress | MetricPoint | CheckpointEvent | PhaseEvent
_EVENT_TYPES: dict[str, type[Any]] = {
    "progress": Progress,
    "point": MetricPoint,
    "checkpoint": CheckpointEvent,
    "phase": PhaseEvent,
}


class RunFolder:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.spec_path = self.root / "spec.pkl"
        self.stop_path = self.root / "stop"
        self.events_path = self.root / "events.jsonl"

    def _write(self, path: Path, data: bytes) -> None:
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, path)

    # The spec ---------------------------------------------------------------------------------

    def write_spec(self, spec: TrainingSpec) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write(self.spec_path, pickle.dumps(spec))

    def read_spec(self) -> TrainingSpec:
        spec = pickle.loads(self.spec_path.read_bytes())
        if not isinstance(spec, TrainingSpec):
            raise TypeError(f"{self.spec_path.name} holds no TrainingSpec")
        return spec

    # Stop requests, parent to ranks -----------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        self._write(self.stop_path, reason.encode())

    def stop_reason(self) -> StopReason | None:
        try:
            text = self.stop_path.read_text().strip()
        except FileNotFoundError:
            return None
        return next((reason for reason in _STOP_REASONS if reason == text), None)

    # Events, main rank to parent --------------------------------------------------------------

    def append_event(self, event: Event) -> None:
        name = next(n for n, cls in _EVENT_TYPES.items() if isinstance(event, cls))
        fields = asdict(event)
        if isinstance(event, CheckpointEvent):
            fields["path"] = str(event.path)
        with self.events_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"event": name, "fields": fields}) + "\n")

    def read_events(self, offset: int) -> tuple[list[Event], int]:
        """The events appended since byte `offset`, and the offset after them."""
        try:
            with self.events_path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        events = [_event(json.loads(line)) for line in data[:end].splitlines() if line.strip()]
        return events, offset + end

    def _recorded_path(self, step: int) -> Path:
        return self.root / f"recorded-{step}"

    def acknowledge_checkpoint(self, step: int) -> None:
        self._write(self._recorded_path(step), b"")

    def wait_for_acknowledgement(self, step: int, go_on: Callable[[], bool]) -> None:
        """Until the parent has recorded checkpoint `step`, or `go_on` says to stop waiting."""
        path = self._recorded_path(step)
        while not path.exists() and go_on():
            time.sleep(ACK_POLL_S)

    # Outcomes, each rank to parent ------------------------------------------------------------

    def _outcome_path(self, rank: int) -> Path:
        return self.root / f"outcome-{rank}.pkl"

    def write_outcome(self, rank: int, outcome: Outcome) -> None:
        try:
            data = pickle.dumps(outcome)
        except Exception:
            # An error that does not pickle still comes back, as its type name and message.
            error = outcome.error
            data = pickle.dumps(Outcome(error=RuntimeError(f"{type(error).__name__}: {error}")))
        self._write(self._outcome_path(rank), data)

    def outcomes(self) -> dict[int, Outcome]:
        """Every rank's outcome that was written, by rank."""
        found: dict[int, Outcome] = {}
        for path in self.root.glob("outcome-*.pkl"):
            rank = path.stem.removeprefix("outcome-")
            if rank.isdigit():
                found[int(rank)] = pickle.loads(path.read_bytes())
        return found


def _event(line: dict[str, Any]) -> Event:
    cls = _EVENT_TYPES[line["event"]]
    fields = dict(line["fields"])
    if cls is CheckpointEvent:
        fields["path"] = Path(fields["path"])
    event: Event = cls(**fields)
    return event


def parent_alive(pid: int) -> bool:
    """Whether process `pid` still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True
