"""Is the default study's result robust to the training seed? Train the default ladder with several seeds (one
Snakemake run; seed 0's models are shared with the default study's), then print, per seed, the subtasks whose
exact match emerged (the analysis's own verdict on that seed's models alone) and the largest model's exact match
on each, and check the claims the README makes:

- the same subtasks emerge in every seed;
- on an emerged subtask, final exact match never drops by more than `--max-drop` from one size to the next.

Last line: `seed_robust: true|false`. Usage: `python bench/seeds.py [--seeds 0 1 2] [--cores 2]` (about three
times the default study's training time).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from emergence.analysis import emergence_table

REPO = Path(__file__).resolve().parents[1]


def run_study(seeds: list[int], cores: int, base: Path) -> Path:
    """Run the base config with the given seeds as study `seeds`; return its cells.parquet."""
    config = yaml.safe_load(base.read_text())
    for family in config["models"]:
        family["seeds"] = seeds
    config["study"] = "seeds"
    overlay = REPO / "results" / "seeds-config.yaml"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", str(overlay)],
                   cwd=REPO, check=True)
    return REPO / "results" / "seeds" / "latest" / "cells.parquet"


def seed_report(cells: pd.DataFrame, max_drop: float) -> tuple[dict, bool]:
    """Per seed: {(task, strategy): (largest model's exact match, emergence FLOPs)} for the emerged cells; and
    whether every emerged curve is monotone within `max_drop`."""
    emerged, monotone = {}, True
    for seed, group in cells.groupby("seed"):
        table = emergence_table(group)
        hits = table[(table.metric == "exact_match") & table.emerged]
        finals = group[group.final_checkpoint].sort_values("train_flops")
        emerged[seed] = {}
        for row in hits.itertuples():
            curve = finals[(finals.task == row.task) & (finals.strategy == row.strategy)
                           & (finals.family == row.family)].exact_match.to_numpy()
            emerged[seed][(row.task, row.strategy)] = (curve[-1], row.emergence_flops)
            drops = curve[:-1] - curve[1:]
            if len(drops) and drops.max() > max_drop:
                monotone = False
                print(f"  seed {seed}: {row.task} {row.strategy} drops by {drops.max():.3f} between sizes: {curve}")
    return emerged, monotone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--max-drop", type=float, default=0.1)
    args = parser.parse_args()
    cells = pd.read_parquet(run_study(args.seeds, args.cores, args.config))
    emerged, monotone = seed_report(cells, args.max_drop)
    print(f"\n{'seed':>4}  emerged (task, strategy): largest model's exact match (emergence FLOPs)")
    for seed, hits in emerged.items():
        listing = ", ".join(f"{task} {strategy}: {em:.3f} ({flops:.1e})"
                            for (task, strategy), (em, flops) in sorted(hits.items()))
        scales = len({flops for em, flops in hits.values()})
        print(f"{seed:>4}  {listing or '(none)'}; {scales} distinct emergence scale(s)")
    fewshot = all(em >= hits[(task, "0shot")][0] for hits in emerged.values()
                  for (task, strategy), (em, _) in hits.items() if (task, "0shot") in hits)
    print(f"on the largest model, k-shot at least as good as 0-shot on every emerged subtask: {fewshot}")
    same = len({frozenset(hits) for hits in emerged.values()}) == 1
    print(f"same subtasks emerge in every seed: {same}; no drop over {args.max_drop} between sizes: {monotone}")
    print(f"seed_robust: {str(same and monotone and bool(next(iter(emerged.values())))).lower()}")


if __name__ == "__main__":
    main()
