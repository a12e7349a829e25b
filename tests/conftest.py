import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # the tests' hub: none, unless a test serves one


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None,
              repo: Path = REPO) -> subprocess.CompletedProcess:
    """Run the real workflow of this checkout (or of a copy of it in `repo`, its own package first on the path) with
    `workdir` as its working directory (offline hub unless `env` says otherwise: a value of None removes a
    variable)."""
    env = {**os.environ, **OFFLINE, **({"PYTHONPATH": str(repo)} if repo != REPO else {}), **(env or {})}
    env = {key: value for key, value in env.items() if value is not None}
    proc = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir), *args],
        capture_output=True, text=True, env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def job_counts(dry_run_output: str) -> dict:
    """The 'Job stats' table of a dry run as {rule: count}; {} when there is nothing to do."""
    if "Job stats:" not in dry_run_output:
        return {}
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke study, run once for the whole session: (workdir, snakemake output)."""
    workdir = tmp_path_factory.mktemp("smoke")
    proc = snakemake(workdir, "--cores", "2", "--configfile", str(REPO / "tests/configs/smoke.yaml"))
    return workdir, proc


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A real ladder checkpoint, barely trained, with room for long prompts (n_ctx 1024)."""
    from emergence.ladder.train import TrainSettings, train_ladder_run

    root = tmp_path_factory.mktemp("tiny_model")
    settings = TrainSettings.from_config({"width": 16, "train_tokens": 20_000, "checkpoints": 1, "n_ctx": 1024,
                                          "operations": {"addition_3digit": 1.0}})
    train_ladder_run(settings, root)
    return root
