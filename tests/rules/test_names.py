"""rules.names checks Hub ids in plain Python, exactly as the Hub client does.

The Hub client's `validate_repo_id` is what refuses a bad id when the worker passes one on; the
API does not import it (rules imports only the standard library), so the two are compared here on
many strings near the rule's edges.
"""

from __future__ import annotations

import random

import pytest
from huggingface_hub.utils import HFValidationError, validate_repo_id

from rules.names import check_hub_id, check_model_name

# Mostly the Hub's own characters, so that many strings are ids and many are near misses.
ALPHABET = "abZ9_" * 3 + ".-/" + " \n\\~:é"


def hub_accepts(value: str) -> bool:
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def rules_accept(value: str) -> bool:
    try:
        check_hub_id(value)
    except ValueError:
        return False
    return True


def candidates() -> list[str]:
    rng = random.Random(11)
    values = [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 10))) for _ in range(20_000)
    ]
    # Lengths around the 96-character limit of each part, and the edges of each part.
    for n in (95, 96, 97):
        values += ["a" * n, f"o/{'b' * n}", f"{'c' * n}/n", f"{'d' * n}/{'e' * n}"]
        values += [f"_{'f' * (n - 2)}_", f"-{'g' * (n - 1)}", f"{'h' * (n - 1)}."]
    values += ["a.git", "a/b.git", "a.gi", "a--b", "a-b", "a..b", "a.b", "_/_", "a/-b", "a-/b"]
    return values


def test_the_rule_is_the_hub_clients() -> None:
    values = candidates()
    differ = [v for v in values if rules_accept(v) != hub_accepts(v)]
    assert not differ, differ[:20]
    # Not a vacuous comparison: both answers occur often.
    accepted = sum(rules_accept(v) for v in values)
    assert 1000 < accepted < len(values) - 1000


@pytest.mark.parametrize("value", ["org/name", "name", "a_b.c-d/e.f", "x" * 96])
def test_model_names_are_hub_ids(value: str) -> None:
    assert check_model_name(value) == value
