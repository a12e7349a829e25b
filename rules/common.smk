from pathlib import Path

from snakemake.utils import min_version, validate

from emergence.config import SCHEMA_PATH, check_config
from emergence.provenance import build_report, publish
from emergence.study import plan_study

min_version("9.0")


# Friendly errors first (they name the key and list valid choices), then Snakemake's own validation, which
# also fills in the schema's defaults.
check_config(config)
validate(config, str(SCHEMA_PATH))

PLAN = plan_study(config, workflow.basedir)
STUDY_DIR = f"results/{PLAN.study}"
VERSION_DIR = f"{STUDY_DIR}/{PLAN.version}"

wildcard_constraints:
    run="|".join(PLAN.runs) or "none",
    task="|".join(PLAN.tasks) or "none",
    strategy="|".join(PLAN.strategies) or "none",


def run_dirs():
    return [f"results/models/{run}" for run in PLAN.runs]


def task_dirs():
    return [f"results/tasks/{task}" for task in PLAN.tasks]


def cell_files():
    return [f"results/cells/{run}/{task}/{strategy}.parquet" for run, task, strategy in PLAN.cells()]


def task_figures():
    names = {spec["task"] for spec in PLAN.tasks.values()}
    return [f"{VERSION_DIR}/figures/scaling_{name}.{ext}" for name in sorted(names) for ext in ("png", "pdf")]


GRIDS = [("exact_match", "train_flops"), ("target_ce_per_token", "train_flops"),
         ("token_edit_distance", "train_flops"), ("exact_match", "params"), ("exact_match", "heldout_loss")]


def final_outputs():
    return [
        *[f"{VERSION_DIR}/figures/grid_{m}_vs_{x}.{ext}" for m, x in GRIDS for ext in ("png", "pdf")],
        f"{VERSION_DIR}/tables/emergence.csv",
        f"{VERSION_DIR}/manifest.json",
        f"{VERSION_DIR}/config.yaml",
        f"{VERSION_DIR}/samples.parquet",
        f"{VERSION_DIR}/cells.parquet",
        f"{VERSION_DIR}/tables/cells.csv",
        f"{VERSION_DIR}/tables/cells.md",
        f"{VERSION_DIR}/figures/pl_check.png",
        f"{VERSION_DIR}/figures/pl_check.pdf",
        *task_figures(),
        *([f"{VERSION_DIR}/figures/augmentation.png", f"{VERSION_DIR}/tables/augmentation.csv"]
          if PLAN.comparisons else []),
    ]


def publish_version():
    """After a successful run: the HTML report, `results/<study>/latest` -> this version, versions.csv."""
    build_report(workflow.main_snakefile, Path.cwd(), VERSION_DIR)
    publish(STUDY_DIR, PLAN.version)
