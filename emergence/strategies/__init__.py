"""Prompting strategies. Plain k-shot strategies are named `<k>shot` (`0shot`, `2shot`, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass

KSHOT = re.compile(r"^(\d+)shot$")


@dataclass(frozen=True)
class Strategy:
    name: str
    num_fewshot: int


def parse_strategy(name: str) -> Strategy:
    """`'2shot'` -> Strategy('2shot', 2); anything else fails with the valid forms."""
    match = KSHOT.match(name)
    if not match:
        raise ValueError(f"unknown strategy {name!r}; valid: '<k>shot' for k >= 0, e.g. '0shot', '2shot'")
    return Strategy(name=name, num_fewshot=int(match.group(1)))
