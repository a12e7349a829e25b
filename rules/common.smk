import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from emergence.config import SCHEMA_PATH, check_config
from emergence.provenance import build_report, publish
from emergence.study import keyed, network_problems, plan_study
from emergence.tasks import bigbench

min_version("9.0")


# Friendly errors first (they name the key and list valid choices), then Snakemake's own validation, which
# also fills in the schema's defaults.
check_config(config)
validate(config, str(SCHEMA_PATH))

PLAN = plan_study(config, workflow.basedir)
STUDY_DIR = f"results/{PLAN.study}"
VERSION_DIR = f"{STUDY_DIR}/{PLAN.version}"

# BIG-bench data is cached by the archive's checksum: another archive never mixes with the pinned one.
BIGBENCH_SHA8 = config["bigbench"]["archive_sha256"][:8]
BIGBENCH_ARCHIVE = f"results/downloads/bigbench-{bigbench.VERSION}-{BIGBENCH_SHA8}.tar.gz"
BIGBENCH_DIR = f"results/data/bigbench-{bigbench.VERSION}-{BIGBENCH_SHA8}"


def escaped(names):
    return "|".join(re.escape(n) for n in names) or "none"


wildcard_constraints:
    run=escaped(PLAN.runs),
    task=escaped(PLAN.tasks),
    strategy=escaped(PLAN.strategies),
    family=escaped(PLAN.published),
    parent=escaped({bigbench.parent_of(spec["task"]) for spec in PLAN.tasks.values() if spec["kind"] == "bigbench"}),


def runs_from(*sources):
    return [key for key, run in PLAN.runs.items() if run["source"] in sources]


def task_source(wildcards):
    """A BIG-bench (sub)task is converted from its shipped copy or else its parent extracted from the archive;
    other tasks need no input."""
    spec = PLAN.tasks[wildcards.task]
    if spec["kind"] != "bigbench":
        return {}
    if bigbench.is_shipped(spec["task"]):
        return {"source": str(bigbench.shipped_source(spec["task"]))}
    return {"source": f"{BIGBENCH_DIR}/{bigbench.parent_of(spec['task'])}"}


def published_files():
    """The cells of each published family (one Parquet file per family, read from its result files)."""
    return [f"{VERSION_DIR}/published/{name}.parquet" for name in PLAN.published]


def published_outputs():
    """One line per published family (Figure 2 of real families); with own evaluations too, the overlay."""
    if not PLAN.published:
        return []
    overlay = [f"{VERSION_DIR}/tables/published_overlay.csv", f"{VERSION_DIR}/figures/published_overlay.png",
               f"{VERSION_DIR}/figures/published_overlay.pdf"] if PLAN.runs else []
    return [f"{VERSION_DIR}/figures/published_families.png", f"{VERSION_DIR}/figures/published_families.pdf", *overlay]


def run_dirs():
    return [f"results/models/{run}" for run in PLAN.runs]


def task_dirs():
    return [f"results/tasks/{task}" for task in PLAN.tasks]


def run_cells(run):
    """(task key, strategy key) of every cell of one run."""
    return [(task, strategy) for r, task, strategy in PLAN.cells() if r == run]


def cellset(run):
    """The folder of a run's cells under `cells_per_job: run`: named by the set, so another set is another job."""
    return keyed("cells", run_cells(run))


def cell_files():
    """Per-cell Parquet files, or under `cells_per_job: run` one folder per run holding them."""
    if config["evaluation"]["cells_per_job"] == "run":
        return [f"results/cells/{run}/{cellset(run)}" for run in PLAN.runs]
    return [f"results/cells/{run}/{task}/{strategy}.parquet" for run, task, strategy in PLAN.cells()]


def task_figures():
    names = {spec["task"] for spec in PLAN.tasks.values()}
    return [f"{VERSION_DIR}/figures/scaling_{name}.{ext}" for name in sorted(names) for ext in ("png", "pdf")]


GRIDS = [("paper", "train_flops"), ("exact_match", "train_flops"), ("target_ce_per_token", "train_flops"),
         ("token_edit_distance", "train_flops"), ("exact_match", "params"), ("exact_match", "heldout_loss")]


def final_outputs():
    return [
        *[f"{VERSION_DIR}/figures/grid_{m}_vs_{x}.{ext}" for m, x in GRIDS for ext in ("png", "pdf")],
        f"{VERSION_DIR}/tables/emergence.csv",
        f"{VERSION_DIR}/tables/forecast.csv",
        f"{VERSION_DIR}/figures/forecast.png",
        f"{VERSION_DIR}/manifest.json",
        f"{VERSION_DIR}/config.yaml",
        f"{VERSION_DIR}/samples.parquet",
        f"{VERSION_DIR}/cells.parquet",
        f"{VERSION_DIR}/tables/cells.csv",
        f"{VERSION_DIR}/tables/cells.md",
        f"{VERSION_DIR}/figures/pl_check.png",
        f"{VERSION_DIR}/figures/pl_check.pdf",
        *task_figures(),
        *published_outputs(),
        *([f"{VERSION_DIR}/figures/augmentation.png", f"{VERSION_DIR}/tables/augmentation.csv"]
          if PLAN.comparisons else []),
    ]


def check_network():
    """Before any job runs (not on dry runs): hub models and hub datasets this run needs must be reachable."""
    if problems := network_problems(PLAN):
        raise WorkflowError("Cannot start:\n  - " + "\n  - ".join(problems))


def publish_version():
    """After a successful run: the HTML report, `results/<study>/latest` -> this version, versions.csv."""
    build_report(workflow.main_snakefile, Path.cwd(), VERSION_DIR)
    publish(STUDY_DIR, PLAN.version)
