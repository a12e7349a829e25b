"""Is the default study's result robust to the training seed? Train the default ladder with several seeds (one
Snakemake run; seed 0's models are shared with the default study's), then print, per seed, the subtasks whose
exact match emerged (the analysis's own verdict on that seed's models alone) and the largest model's exact match
on each, and check the claims the README makes:

- the same subtasks emerge in every seed;
- on an emerged subtask, final exact match never drops by more than `--max-drop` from one size to the next;
- two or more subtasks emerge at distinct scales within one strategy (reported; not part of `seed_robust`);
- k-shot against 0-shot on the largest model, item by item: which wins, and whether k-shot is significantly worse
  (one-sided exact McNemar test on the items only one of them gets right; 250 items resolve about 0.05).

Last line: `seed_robust: true|false`. Usage: `python bench/seeds.py [--seeds 0 1 2] [--cores 2] [--workdir DIR]
[--cpu-kernels avx2 --workdir DIR]` (about three times the default study's training time; results go under DIR, by
default this checkout).

`--cpu-kernels` rehearses another CPU type on this one: torch, MKL and oneDNN use only that instruction set's
kernels, which round differently, as another machine's do (docs/reliability.md). Models are keyed by config and
code, not by machine, so such a run needs a workdir of its own; each checkpoint's `model.json` records the
kernel set that trained it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import binomtest

from emergence.analysis import emergence_table

REPO = Path(__file__).resolve().parents[1]


# Instruction sets to confine the CPU kernels to: (torch's ATEN_CPU_CAPABILITY, MKL's, oneDNN's names)
CPU_KERNELS = {"avx512": ("avx512", "AVX512", "AVX512_CORE"), "avx2": ("avx2", "AVX2", "AVX2"),
               "default": ("default", "SSE4_2", "SSE41")}


def kernel_environment(kernels: str | None) -> dict[str, str] | None:
    """The environment for the study's jobs: this one (None) or, given `kernels`, this one with the CPU kernels
    confined to them."""
    if kernels is None:
        return None
    aten, mkl, onednn = CPU_KERNELS[kernels]
    return {**os.environ, "ATEN_CPU_CAPABILITY": aten, "MKL_ENABLE_INSTRUCTIONS": mkl, "ONEDNN_MAX_CPU_ISA": onednn}


def run_study(seeds: list[int], cores: int, base: Path, workdir: Path, kernels: str | None = None) -> Path:
    """Run the base config with the given seeds as study `seeds` in `workdir` (CPU kernels confined to `kernels`
    if given); return its results folder."""
    config = yaml.safe_load(base.read_text())
    for family in config["models"]:
        family["seeds"] = seeds
    config["study"] = "seeds"
    overlay = workdir / "results" / "seeds-config.yaml"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                    str(workdir), "--cores", str(cores), "--configfile", str(overlay)], check=True,
                   env=kernel_environment(kernels))
    return workdir / "results" / "seeds" / "latest"


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


def distinct_scales(hits: dict) -> bool:
    """At least two subtasks emerged and, for some strategy, at distinct emergence scales (FLOPs)."""
    by_strategy = {}
    for (task, strategy), (_, flops) in hits.items():
        by_strategy.setdefault(strategy, {})[task] = flops
    return any(len(tasks) >= 2 and len(set(tasks.values())) >= 2 for tasks in by_strategy.values())


def fewshot_report(samples: pd.DataFrame, emerged: dict, alpha: float = 0.05) -> tuple[bool, bool]:
    """k-shot against 0-shot on each seed's largest model (final checkpoint), item by item, for every subtask whose
    k-shot or 0-shot line emerged. Returns (k-shot at least as good on every one, k-shot never significantly worse:
    one-sided exact McNemar p >= alpha)."""
    at_least, not_worse = True, True
    for seed, hits in emerged.items():
        final = samples[(samples.seed == seed) & samples.final_checkpoint]
        final = final[final.train_flops == final.train_flops.max()]
        for task in sorted({task for task, _ in hits}):
            rows = final[final.task == task].pivot_table(index="doc_id", columns="strategy", values="exact_match")
            for kshot in [s for s in rows.columns if s != "0shot"]:
                k_only = int(((rows[kshot] == 1) & (rows["0shot"] == 0)).sum())
                zero_only = int(((rows[kshot] == 0) & (rows["0shot"] == 1)).sum())
                p = binomtest(zero_only, k_only + zero_only, 0.5, alternative="greater").pvalue if zero_only else 1.0
                at_least &= rows[kshot].mean() >= rows["0shot"].mean()
                not_worse &= p >= alpha
                print(f"{seed:>4}  {task} {kshot} {rows[kshot].mean():.3f} vs 0shot {rows['0shot'].mean():.3f}: "
                      f"right only {kshot} {k_only}, only 0shot {zero_only} items (McNemar p = {p:.2f})")
    return at_least, not_worse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--max-drop", type=float, default=0.1)
    parser.add_argument("--workdir", type=Path, default=REPO, help="where results/ goes (default: this checkout)")
    parser.add_argument("--cpu-kernels", choices=sorted(CPU_KERNELS),
                        help="train and evaluate with only this instruction set's kernels (needs its own --workdir)")
    args = parser.parse_args()
    if args.cpu_kernels and args.workdir.resolve() == REPO:
        parser.error(f"--cpu-kernels {args.cpu_kernels} needs a --workdir of its own: this checkout's models, keyed "
                     "by config and code only, would be reused as they are (e.g. --workdir ../kernels-avx2)")
    study = run_study(args.seeds, args.cores, args.config.resolve(), args.workdir.resolve(), args.cpu_kernels)
    emerged, monotone = seed_report(pd.read_parquet(study / "cells.parquet"), args.max_drop)
    print(f"\n{'seed':>4}  emerged (task, strategy): largest model's exact match (emergence FLOPs)")
    for seed, hits in emerged.items():
        listing = ", ".join(f"{task} {strategy}: {em:.3f} ({flops:.1e})"
                            for (task, strategy), (em, flops) in sorted(hits.items()))
        scales = len({flops for em, flops in hits.values()})
        print(f"{seed:>4}  {listing or '(none)'}; {scales} distinct emergence scale(s)")
    distinct = all(distinct_scales(hits) for hits in emerged.values())
    print("\nseed  largest model, k-shot against 0-shot on the same items")
    at_least, not_worse = fewshot_report(pd.read_parquet(study / "samples.parquet"), emerged)
    print(f"on the largest model, k-shot at least as good as 0-shot on every emerged subtask: {at_least}; "
          f"never significantly worse (p < 0.05): {not_worse}")
    same = len({frozenset(hits) for hits in emerged.values()}) == 1
    print(f"same subtasks emerge in every seed: {same}; no drop over {args.max_drop} between sizes: {monotone}")
    print(f"two or more subtasks at distinct emergence scales (within one strategy) in every seed: {distinct}")
    print(f"seed_robust: {str(same and monotone and bool(next(iter(emerged.values())))).lower()}")


if __name__ == "__main__":
    main()
