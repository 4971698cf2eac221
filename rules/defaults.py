"""Hyperparameter defaults: what a job that leaves a value out trains with.

The API fills them into the stored job (and its OpenAPI page shows them); the worker's
Hyperparameters takes the same ones, so a spec built without the API trains the same way.
"""

from __future__ import annotations

from typing import Final

EPOCHS: Final = 1
BATCH_SIZE: Final = 16
LEARNING_RATE: Final = 2e-5
WARMUP_RATIO: Final = 0.1
MAX_SEQ_LENGTH: Final[int | None] = None  # the model's own (rules.seq_length)
SEED: Final = 42
PRECISION: Final = "auto"
MAX_STEPS: Final[int | None] = None  # epochs decide (rules.steps)
EVAL_STEPS: Final[int | None] = None  # about ten evaluations a run
TIME_LIMIT_S: Final[int | None] = None  # the server's EMBEDTUNE_MAX_TIME_LIMIT_S
