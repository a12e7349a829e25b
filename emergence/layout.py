"""The `results/` folder: every path the pipeline writes, relative to the working directory, in one place.

Shared, content-addressed data lives in the folders named by `SHARED` (a study may not take one of these names);
each study has its own folder of versions. Functions take the names they place, or Snakemake wildcards such as
`"{run}"`, so rules and code use the same patterns.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

RESULTS = "results"
# BIG-bench files shipped with the package, laid out as the archive's benchmark_tasks/ (read, never written)
SHIPPED_BIGBENCH = Path(str(resources.files("emergence"))) / "data" / "bigbench"
# Folders of results/ that hold shared, content-addressed data; a study's own folder is results/<study>/.
SHARED = ("cells", "data", "downloads", "logs", "models", "tasks")


def model_run(run: str) -> str:
    """A model run: its checkpoints as model directories (or, for a single model, one model directory)."""
    return f"{RESULTS}/models/{run}"


def task(task: str) -> str:
    return f"{RESULTS}/tasks/{task}"


def evaluation_job(run: str, job: str) -> str:
    """One evaluation job's folder: the cells it computed for every checkpoint of `run`."""
    return f"{RESULTS}/cells/{run}/{job}"


def cell_file(job_dir: str, task: str, strategy: str) -> str:
    """One cell (task x strategy, every checkpoint of the job's run) inside its job's folder."""
    return f"{job_dir}/{task}/{strategy}.parquet"


def bigbench_archive(release: str) -> str:
    """The pinned BIG-bench archive; `release` names its version and checksum (`bigbench-1.0.0-<sha8>`)."""
    return f"{RESULTS}/downloads/{release}.tar.gz"


def bigbench_task(release: str, parent: str) -> str:
    """One BIG-bench task's JSON files (its subtasks' included), extracted from the archive."""
    return f"{RESULTS}/data/{release}/{parent}"


def shipped_bigbench_task(parent: str) -> str:
    """A BIG-bench task's shipped files (only the subtasks the package ships)."""
    return str(SHIPPED_BIGBENCH / parent)


def log(rule: str, name: str) -> str:
    """The log of a job of a shared rule (`name` may hold wildcards and slashes)."""
    return f"{RESULTS}/logs/{rule}/{name}.log"


def study_dir(study: str) -> str:
    """A study's versions, `latest` and `versions.csv`."""
    return f"{RESULTS}/{study}"


def version_dir(study: str, version: str) -> str:
    """One version of a study: aggregates, manifest, figures, tables and its logs."""
    return f"{study_dir(study)}/{version}"
