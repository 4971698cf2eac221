"""Rules the API and the worker must apply alike, in one place both import.

Hold-out, step counts, name checks, base model resolution, the max-sequence-length rule, error
codes and hyperparameter defaults. Standard library only (an import-linter contract and
tests/test_layers.py hold it to that), so the API image needs neither `worker/` nor torch.
"""
