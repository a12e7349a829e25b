"""Prompting strategies as data: a YAML file per strategy (this folder, or a folder named in the config's
`strategy_dirs`), composable with any task whose documents have the fields it needs. Plain k-shot strategies
need no file: `0shot`, `2shot`, ... (`<k>shot`)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

KSHOT = re.compile(r"^(\d+)shot$")
KINDS = ("generate", "p_true")
BUILTIN_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Strategy:
    name: str
    kind: str = "generate"  # or "p_true": judge a proposed answer True/False (calibration, Kadavath et al. 2022)
    num_fewshot: int = 0
    instruction: str | None = None  # a task description placed before the prompt (lm-eval `description`)
    completion: str = "answer"  # document field of the gold completion: the answer, or a trace ending in it
    answer_pattern: str | None = None  # regex whose first group is the final answer within a generation
    max_gen_toks: int = 8  # room for the completion; the prompt keeps n_ctx - max_gen_toks tokens
    description: str = ""

    def spec(self) -> dict:
        """Everything that defines the strategy's cells (its content key)."""
        return asdict(self)


def available(dirs=()) -> list[str]:
    names = {p.stem for d in (*map(Path, dirs), BUILTIN_DIR) for p in Path(d).glob("*.yaml")}
    return ["<k>shot", *sorted(names)]


def load_strategy(name: str, dirs=()) -> Strategy:
    """`'2shot'` -> plain 2-shot; otherwise `<name>.yaml` from `dirs`, then this folder."""
    if match := KSHOT.match(name):
        k = int(match.group(1))
        return Strategy(name=name, num_fewshot=k, description=f"plain {k}-shot prompting")
    for folder in (*map(Path, dirs), BUILTIN_DIR):
        path = folder / f"{name}.yaml"
        if path.exists():
            spec = yaml.safe_load(path.read_text()) or {}
            known = {f.name for f in fields(Strategy)} - {"name"}
            if unknown := sorted(set(spec) - known):
                raise ValueError(f"strategy file {path}: unknown keys {unknown}; "
                                 f"valid keys: {', '.join(sorted(known))}")
            if spec.get("kind", "generate") not in KINDS:
                raise ValueError(f"strategy file {path}: kind {spec['kind']!r} is not one of {', '.join(KINDS)}")
            return Strategy(name=name, **spec)
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(available(dirs))} "
                     f"(add <name>.yaml to a folder listed in strategy_dirs for your own)")
