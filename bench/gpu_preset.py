"""Run `presets/gpu.yaml` on a machine with one GPU and print what the preset is for: the wall time of the whole
Snakemake run, each run's training (tokens, FLOPs, tokens/s, MFU), the ladder's largest FLOPs against the CPU
default's, exact match per size on each subtask, and the emergence verdicts with their scales.

Training runs share the GPU (Snakemake starts them together), so a run's recorded MFU is a lower bound of what it
gets alone; `--mfu-tokens` then trains the widest model alone on that many tokens and reports its MFU.

`python bench/gpu_preset.py [--cores 16] [--workdir DIR] [--mfu-tokens 5000000]`; for the preset on several seeds,
`python bench/seeds.py --config presets/gpu.yaml --seeds 0 1 --cores 16`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_preset(config: dict, cores: int, workdir: Path) -> float:
    """Run the study of `config` in `workdir`; return its wall time in seconds."""
    path = workdir / "results" / f"{config['study']}-config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                    str(workdir), "--cores", str(cores), "--configfile", str(path)], check=True)
    return time.perf_counter() - start


def training_table(workdir: Path, model_ids: set[str]) -> pd.DataFrame:
    """The final checkpoint's training record of each run of the study (from its model.json)."""
    from emergence.models.modeldir import METADATA_FILE, read_metadata

    rows = []
    for path in (workdir / "results" / "models").glob(f"*/*/{METADATA_FILE}"):
        meta = read_metadata(path.parent)
        if meta["model_id"] in model_ids and meta["final_checkpoint"]:
            rows.append({"run": meta["run"], "width": meta["size"]["width"], "layers": meta["size"]["n_layer"],
                         "nonemb_params": meta["nonembedding_params"], "tokens": meta["train_tokens"],
                         "flops": meta["train_flops"], "train_s": meta["wall_time_s"],
                         "tokens_per_s": meta["train_tokens_per_s"], "mfu": meta["train_mfu"],
                         "heldout_loss": round(meta["heldout_loss"], 4)})
    return pd.DataFrame(rows).sort_values("flops")


def ladder_runs(config: dict) -> list[dict]:
    """The planned settings of every ladder run of a config (as the workflow plans them)."""
    from emergence.config import check_config
    from emergence.study import plan_study

    runs = plan_study(check_config(config), REPO).runs.values()
    return [run["settings"] for run in runs if run["source"] == "ladder"]


def default_largest_flops() -> float:
    """6ND of the CPU default study's most expensive run, as planned from `config.yaml`."""
    from emergence.study import training_cost

    return max(map(training_cost, ladder_runs(yaml.safe_load((REPO / "config.yaml").read_text()))))


def widest_alone_mfu(config: dict, tokens: int) -> dict:
    """Train the config's widest run alone on `tokens` tokens; its model.json's throughput and MFU."""
    from emergence.ladder.train import TrainSettings, train_ladder_run

    widest = max(ladder_runs(config), key=lambda settings: settings["width"])
    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainSettings.from_config(widest, train_tokens=tokens, checkpoints=1)
        meta = train_ladder_run(settings, tmp)[-1]
    return {key: meta[key] for key in ("run", "train_tokens", "wall_time_s", "train_tokens_per_s", "train_mfu")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "presets" / "gpu.yaml")
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=REPO, help="where results/ goes (default: this checkout)")
    parser.add_argument("--mfu-tokens", type=int, default=0, help="then train the widest model alone (0: skip)")
    args = parser.parse_args()
    import torch

    print(f"# {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; torch {torch.__version__}",
          flush=True)
    config = yaml.safe_load(args.config.read_text())
    wall = run_preset(config, args.cores, args.workdir.resolve())
    study = args.workdir.resolve() / "results" / config["study"] / "latest"
    cells = pd.read_parquet(study / "cells.parquet")
    training = training_table(args.workdir.resolve(), set(cells.model))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\nstudy {config['study']}: snakemake wall time {wall:.1f} s\n")
        print(training.to_string(index=False))
        finals = cells[cells.final_checkpoint]
        print("\nexact match of the final checkpoints (rows: non-embedding params; columns: task, strategy)")
        print(finals.pivot_table(index="nonembedding_params", columns=["task", "strategy"],
                                 values="exact_match").round(3).to_string())
        print("\ntables/emergence.csv, exact match:")
        table = pd.read_csv(study / "tables" / "emergence.csv")
        columns = ["task", "strategy", "chance", "emerged", "emergence_flops", "emergence_params", "verdict",
                   "verdict_reason"]
        print(table.loc[table.metric == "exact_match", columns].to_string(index=False))
    default = default_largest_flops()
    print(f"\nlargest training FLOPs {training.flops.max():.3g}, {training.flops.max() / default:.0f}x the CPU "
          f"default's largest ({default:.3g}, planned); the ladder's training: {training.train_s.sum():.0f} s "
          f"summed over runs, {training.flops.sum():.3g} FLOPs")
    if args.mfu_tokens:
        print(f"widest model alone: {widest_alone_mfu(config, args.mfu_tokens)}", flush=True)


if __name__ == "__main__":
    main()
