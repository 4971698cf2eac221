"""One run on several devices: what its ranks must agree on, and how a global batch is shared.

A run on N devices is N processes (ranks, started by worker.launch) in one torch.distributed
process group: NCCL on GPUs, gloo on CPUs. `batch_size` stays the global batch: every step, one
batch of `batch_size` rows, drawn exactly as a one-process run draws it, is cut into N equal
pieces, one per rank, and MultipleNegativesRankingLoss gathers the embeddings of all pieces, so a
run trains the same steps with the same in-batch negatives on 1 or N devices.

Rank 0 is the main rank: it alone reports progress and metric points, marks checkpoints complete
and saves the model. Whatever decides the trainer's control flow (stop, save) is agreed on by all
ranks every step, or one rank would wait forever in a collective the others never enter.

Every function here is a no-op, or the one-process answer, when no process group is initialised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from worker.training.errors import TrainingError
from worker.training.spec import StopReason

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

T = TypeVar("T")

# Stop reasons by rank, as worker.attempt ranks them: when ranks disagree, the highest wins.
STOP_ORDER: tuple[StopReason, ...] = ("lease_lost", "handed_back", "timeout", "cancelled")


class DevicesUnavailable(TrainingError):
    """The job asks for more GPUs than this worker has."""

    code = "devices_unavailable"


def check_devices(devices: int) -> None:
    """Raise DevicesUnavailable when this machine has GPUs but fewer than `devices` (without
    any, a run on N devices is N processes on the CPU)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() < devices:
        raise DevicesUnavailable(
            f"The job asks for {devices} GPUs and this worker has {torch.cuda.device_count()}."
        )


def _initialised() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """How many ranks the run has (1 without a process group)."""
    if not _initialised():
        return 1
    import torch.distributed as dist

    return int(dist.get_world_size())


def is_main() -> bool:
    """Whether this process is the run's main rank (always, without a process group)."""
    if not _initialised():
        return True
    import torch.distributed as dist

    return int(dist.get_rank()) == 0


def _all_max(value: int) -> int:
    """The largest of every rank's `value`."""
    import torch
    import torch.distributed as dist

    # NCCL reduces only tensors on this rank's GPU; gloo only on the CPU.
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def agree_on_stop(reason: StopReason | None) -> StopReason | None:
    """The stop reason of the whole run: the highest-ranked reason any rank was given (None when
    none was). Every rank must call it at the same step."""
    if world_size() == 1:
        return reason
    code = _all_max(STOP_ORDER.index(reason) + 1 if reason is not None else 0)
    return STOP_ORDER[code - 1] if code else None


def agree(flag: bool) -> bool:
    """True on every rank when it is True on any. Every rank must call it at the same step."""
    if world_size() == 1:
        return flag
    return bool(_all_max(int(flag)))


def barrier() -> None:
    """Wait until every rank got here."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


@contextmanager
def main_rank_evaluation(model: SentenceTransformer) -> Iterator[bool]:
    """Yields whether this rank runs the evaluation: the main rank does, and the other ranks
    encode its inputs with it (sentence-transformers' distributed evaluation) until it is done.
    Every rank must enter it; use `share` to give the others the result."""
    from sentence_transformers.util.distributed import distributed_evaluation

    with distributed_evaluation(model) as runs_here:
        yield runs_here


def share(value: T | None) -> T | None:
    """The main rank's `value`, on every rank."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _row_texts(dataset: Dataset, index: int) -> set[str]:
    return {str(value) for value in dataset[index].values()}


class GlobalBatchPieces:
    """A batch sampler that yields each global batch of `sampler` as `pieces` equal, consecutive
    pieces; the data loader deals them out one per rank in order (accelerate's BatchSamplerShard),
    so rank r trains on piece r of every global batch.

    A batch whose size is not a multiple of `pieces` (the last of an epoch) is filled up to the
    next multiple with rows of the epoch's first batch that share no text with it (MNR would
    take a shared text for a false negative): at most pieces - 1 repeated rows per epoch.
    """

    # Pieces differ in size from batch to batch: None tells accelerate to take them as they come.
    batch_size = None
    drop_last = False

    def __init__(self, sampler: Any, pieces: int, dataset: Dataset) -> None:
        # `sampler` by that name: accelerate sets the epoch of `batch_sampler.sampler` through
        # its shard wrapper, and the global batches reshuffle by epoch.
        self.sampler = sampler
        self.pieces = pieces
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) * self.pieces

    def __iter__(self) -> Iterator[list[int]]:
        first: list[int] | None = None
        for batch in self.sampler:
            rows = [int(i) for i in batch]
            if first is None:
                first = rows
            if len(rows) % self.pieces:
                rows = self._filled(rows, first)
            size = len(rows) // self.pieces
            for piece in range(self.pieces):
                yield rows[piece * size : (piece + 1) * size]

    def _filled(self, rows: list[int], first: list[int]) -> list[int]:
        missing = self.pieces - len(rows) % self.pieces
        taken = set(rows)
        texts: set[str] = set().union(*(_row_texts(self.dataset, i) for i in rows))
        # Rows of the first batch, then of the whole set; without enough rows that share no
        # text, any other row; with too few rows at all, repeats.
        candidates = [*first, *range(min(len(self.dataset), 10_000))]
        fill: list[int] = []
        for index in candidates:
            if len(fill) == missing:
                break
            if index in taken:
                continue
            row = _row_texts(self.dataset, index)
            if row.isdisjoint(texts):
                fill.append(index)
                taken.add(index)
                texts |= row
        others = [i for i in candidates if i not in taken] or rows
        while len(fill) < missing:
            fill.append(others[len(fill) % len(others)])
        return rows + fill


class GlobalBatches:
    """A sentence-transformers `batch_sampler` for a run on `devices` devices: the trainer asks
    it for per-device batches; it draws global batches of `devices` times that size with the
    sampler a one-process run uses (no duplicate texts in a batch) and cuts them in pieces
    (GlobalBatchPieces). A class, not a closure: the trainer pickles its arguments."""

    def __init__(self, devices: int) -> None:
        self.devices = devices

    def __call__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: Any = None,
        seed: int = 0,
    ) -> GlobalBatchPieces:
        from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

        sampler = NoDuplicatesBatchSampler(
            dataset,
            batch_size=batch_size * self.devices,
            # sentence-transformers drops the last, short batch under DDP (its pieces would
            # differ in size); cut into equal pieces, it trains as a one-process run does.
            drop_last=False,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        return GlobalBatchPieces(sampler, self.devices, dataset)
