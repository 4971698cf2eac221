"""Public identifiers: a short type prefix and 24 random hex digits (`job_...`, `ds_...`)."""

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
