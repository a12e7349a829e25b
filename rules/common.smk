import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from emergence import layout
from emergence.config import SCHEMA_PATH, check_config
from emergence.provenance import build_report, publish
from emergence.study import network_problems, plan_study, training_cost

min_version("9.0")


# Friendly errors first (they name the key and list valid choices), then Snakemake's own validation, which
# also fills in the schema's defaults.
check_config(config)
validate(config, str(SCHEMA_PATH))

PLAN = plan_study(config, workflow.basedir)
EVALUATION_JOBS = PLAN.evaluation_jobs(config["evaluation"]["cells_per_job"])
STUDY_DIR = layout.study_dir(PLAN.study)
VERSION_DIR = layout.version_dir(PLAN.study, PLAN.version)
# BIG-bench data is cached by the archive's checksum: another archive never mixes with the pinned one.
BIGBENCH_ARCHIVE = layout.bigbench_archive(PLAN.bigbench_release)


def escaped(names):
    return "|".join(re.escape(n) for n in names) or "none"


wildcard_constraints:
    run=escaped(PLAN.runs),
    task=escaped(PLAN.tasks),
    family=escaped(PLAN.published),
    parent=escaped({spec["parent"] for spec in PLAN.tasks.values() if "parent" in spec}),


def runs_from(*sources):
    return [key for key, run in PLAN.runs.items() if run["source"] in sources]


# Costliest ladder runs first (rank by planned 6ND): on a few cores the widest model's training is the critical
# path, so it starts at once instead of after the small runs.
TRAINING_RANK = {
    run: rank
    for rank, run in enumerate(sorted(runs_from("ladder"), key=lambda key: training_cost(PLAN.runs[key]["settings"])))
}


def task_source(wildcards):
    """A BIG-bench (sub)task is converted from its shipped copy or else its parent extracted from the archive;
    other tasks need no input."""
    spec = PLAN.tasks[wildcards.task]
    if "parent" not in spec:
        return {}
    if spec["shipped"]:
        return {"source": layout.shipped_bigbench_task(spec["parent"])}
    return {"source": layout.bigbench_task(PLAN.bigbench_release, spec["parent"])}


def published_files():
    """The cells of each published family (one Parquet file per family, read from its result files)."""
    return [f"{VERSION_DIR}/published/{name}.parquet" for name in PLAN.published]


def published_outputs():
    """One line per published family (Figure 2 of real families); with own evaluations too, the overlay."""
    if not PLAN.published:
        return []
    overlay = (
        [
            f"{VERSION_DIR}/tables/published_overlay.csv",
            f"{VERSION_DIR}/figures/published_overlay.png",
            f"{VERSION_DIR}/figures/published_overlay.pdf",
        ]
        if PLAN.runs
        else []
    )
    return [f"{VERSION_DIR}/figures/published_families.png", f"{VERSION_DIR}/figures/published_families.pdf", *overlay]


def run_dirs():
    return [layout.model_run(run) for run in PLAN.runs]


def task_dirs():
    return [layout.task(task) for task in PLAN.tasks]


def evaluation_outputs():
    """One folder per evaluation job, holding its cells' Parquet files."""
    return [layout.evaluation_job(run, job) for run, job in EVALUATION_JOBS]


def task_figures():
    names = {spec["task"] for spec in PLAN.tasks.values()}
    return [f"{VERSION_DIR}/figures/scaling_{name}.{ext}" for name in sorted(names) for ext in ("png", "pdf")]


GRIDS = [
    ("paper", "train_flops"),
    ("exact_match", "train_flops"),
    ("target_ce_per_token", "train_flops"),
    ("token_edit_distance", "train_flops"),
    ("exact_match", "params"),
    ("exact_match", "heldout_loss"),
]


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
        *(
            [f"{VERSION_DIR}/figures/augmentation.png", f"{VERSION_DIR}/tables/augmentation.csv"]
            if PLAN.comparisons
            else []
        ),
    ]


def check_network():
    """Before any job runs (not on dry runs): hub models and hub datasets this run needs must be reachable."""
    if problems := network_problems(PLAN, config["evaluation"]["cells_per_job"]):
        raise WorkflowError("Cannot start:\n  - " + "\n  - ".join(problems))


def publish_version():
    """After a successful run: the HTML report, `results/<study>/latest` -> this version, versions.csv."""
    build_report(workflow.main_snakefile, Path.cwd(), VERSION_DIR)
    publish(STUDY_DIR, PLAN.version)
