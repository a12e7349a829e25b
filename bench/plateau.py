"""When does each seed leave the loss plateau? Train one width of the config's ladder with several seeds, measure
the held-out answer loss of every operation along the way, and print per seed when it first fell below a
threshold (the escape), so that a recipe change can be judged by the spread of its escapes, not by one run.

A ladder model first learns all of an answer but its units digit and sits there, its answer loss near 0.6 nats
per token, until it learns the units digit and the loss falls towards 0.01; a size whose budget ends near the escape
gives exact match 0.1 or 0.99 by the seed and the machine's rounding (docs/benchmarks.md, "Across CPU types").
The runs are the pipeline's (`ladder.train.train_ladder_run`, the settings the study would plan for this width);
only the budget may be set longer with `--tokens`, to see escapes that the run's own budget cuts off. The
held-out answers are in the plain convention whatever the corpus's formats.

Usage: `python bench/plateau.py [--width 64] [--seeds 0 1 2 3 4 5] [--tokens N] [--every 100] [--threshold 0.3]
[--jobs 2] [--config config.yaml]` (about a minute per seed at width 64 on one core; `--jobs` seeds at once).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml

from emergence.config import check_config
from emergence.ladder.train import TrainSettings, packed_heldout_rows, train_ladder_run
from emergence.study import ladder_runs

REPO = Path(__file__).resolve().parents[1]
HELDOUT_ROWS = 32  # per operation: ~130 held-out problems


def run_settings(config: dict, width: int, seed: int, tokens: int | None) -> TrainSettings:
    """The settings the study plans for this width and seed of the config's first ladder family."""
    family = next((f for f in config["models"] if f["source"] == "ladder"), None)
    if family is None or width not in family["widths"]:
        raise SystemExit(f"the config has no ladder family with width {width}; choose --width from "
                         f"{family['widths'] if family else 'a config with a ladder family'}")
    runs = ladder_runs({**family, "seeds": [seed]}, training_code="bench")  # all widths: budgets scale with the widest
    settings = next(run["settings"] for run in runs.values() if run["settings"]["width"] == width)
    overrides = {"checkpoints": 1} | ({"train_tokens": tokens} if tokens else {})
    return TrainSettings.from_config(settings, **overrides)


def heldout_by_operation(s: TrainSettings) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Held-out rows of each operation alone (problems never trained on), plain answers."""
    batches = {}
    for name, weight in s.operations:
        if weight > 0:
            alone = dataclasses.replace(s, operations=((name, 1.0),), example_format=(("plain", 1.0),))
            ids, labels, _ = packed_heldout_rows(alone, HELDOUT_ROWS)
            batches[name] = (torch.from_numpy(ids).to(s.device), torch.from_numpy(labels).to(s.device))
    return batches


def loss_curve(s: TrainSettings, every: int) -> tuple[list[int], dict[str, list[float]]]:
    """Train the run; every `every` steps (and at the end) the held-out answer loss of each operation."""
    heldout = heldout_by_operation(s)
    tokens, losses = [], {name: [] for name in heldout}

    def measure(step: int, tokens_seen: int, model) -> None:
        if step % every and step != s.total_steps:
            return
        model.eval()
        with torch.no_grad():
            for name, (ids, labels) in heldout.items():
                losses[name].append(float(model(input_ids=ids, labels=labels).loss))
        model.train()
        tokens.append(tokens_seen)

    with tempfile.TemporaryDirectory() as out:
        train_ladder_run(s, out, on_step=measure)
    return tokens, losses


def escape(tokens: list[int], losses: list[float], threshold: float) -> int | None:
    """Tokens seen when the loss first fell below `threshold`; None if it never did."""
    below = np.flatnonzero(np.asarray(losses) < threshold)
    return tokens[below[0]] if len(below) else None


def seed_curve(config: dict, width: int, seed: int, tokens: int | None, every: int):
    s = run_settings(config, width, seed, tokens)
    return s, loss_curve(s, every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--tokens", type=int, help="training tokens (default: the run's own budget)")
    parser.add_argument("--every", type=int, default=100, help="steps between loss measurements")
    parser.add_argument("--threshold", type=float, default=0.3, help="held-out answer loss (nats/token) of escape")
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once, one thread each")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    args = parser.parse_args()
    config = check_config(yaml.safe_load(args.config.read_text()))
    run_settings(config, args.width, args.seeds[0], args.tokens)  # a bad width fails before any training
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(seed_curve, *zip(*[(config, args.width, seed, args.tokens, args.every)
                                                 for seed in args.seeds])))
    s = runs[0][0]
    print(f"width {args.width}: {s.train_tokens:,} tokens, {s.total_steps} steps, peak lr {s.lr:g}; escape: held-out "
          f"answer loss below {args.threshold} nats/token\n")
    print("seed  per operation: escape (tokens seen, share of the run), final held-out answer loss")
    escapes = {}
    for seed, (_, (tokens, losses)) in zip(args.seeds, runs):
        cells = []
        for name, curve in losses.items():
            at = escapes.setdefault(name, {})[seed] = escape(tokens, curve, args.threshold)
            when = "never" if at is None else f"{at / 1e6:.2f}M ({at / tokens[-1]:.0%})"
            cells.append(f"{name} {when}, {curve[-1]:.3f}")
        print(f"{seed:>4}  " + "; ".join(cells))
    print()
    for name, by_seed in escapes.items():
        hits = sorted(t for t in by_seed.values() if t is not None)
        spread = f", after {hits[0] / 1e6:.2f}M to {hits[-1] / 1e6:.2f}M tokens" if hits else ""
        print(f"{name}: escaped in {len(hits)} of {len(by_seed)} seeds{spread}")


if __name__ == "__main__":
    main()
