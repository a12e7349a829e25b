"""Stage code versions in content keys: a docstring or comment reruns nothing, a logic change reruns exactly the
stages that run the changed code."""

import shutil
import subprocess
from pathlib import Path

import pytest

from emergence.codeversion import stage_modules, stage_version
from tests.conftest import REPO, job_counts, snakemake

TINY = REPO / "tests/configs/tiny.yaml"


def copy_checkout(dest: Path) -> Path:
    """The checkout's files that git tracks or would track (no results, no virtual environment) under `dest`."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_each_stage_runs_its_own_modules():
    evaluation = stage_modules(REPO, ("emergence.evaluate",))
    training = stage_modules(REPO, ("emergence.ladder.train",))
    assert {"emergence.backend", "emergence.tasks.views", "emergence.strategies", "emergence"} <= set(evaluation)
    assert "emergence.ladder.train" not in evaluation
    assert {"emergence.ladder.data", "emergence.ladder.tokenizer", "emergence.ladder"} <= set(training)
    assert "emergence.evaluate" not in training
    assert "emergence.tasks.views" not in training  # the contamination guard reads only `tasks.shipped`


def test_docstrings_and_comments_do_not_count_code_does(tmp_path):
    repo = copy_checkout(tmp_path)
    before = stage_version(repo, "evaluation")
    edit(repo / "emergence/metrics.py", '"""', '# a comment\n"""Reworded. ')
    assert stage_version(repo, "evaluation") == before
    edit(repo / "emergence/metrics.py", "import numpy as np", "import numpy as np\n\nUNUSED = 1")
    assert stage_version(repo, "evaluation") != before  # a module evaluation imports through others


def test_a_changed_shipped_benchmark_file_changes_the_training_version(tmp_path):
    """Training rejects every problem the shipped BIG-bench files pose, so their content is part of its version."""
    copy = copy_checkout(tmp_path)
    before = stage_version(copy, "training")
    edit(copy / "emergence/data/bigbench/arithmetic/2_digit_addition/task.json", "What is", "What's")
    assert stage_version(copy, "training") != before


@pytest.mark.workflow
def test_edits_rerun_exactly_the_stages_whose_code_changed(tmp_path):
    repo = copy_checkout(tmp_path / "repo")

    def dry_run() -> dict:
        proc = snakemake(repo, "aggregate", "-n", "--configfile", str(TINY), repo=repo)
        return job_counts(proc.stdout + proc.stderr)

    snakemake(repo, "aggregate", "--cores", "2", "--configfile", str(TINY), repo=repo)
    assert dry_run() == {}

    evaluate = repo / "emergence/evaluate.py"
    edit(evaluate, '"""Evaluate cells', '"""Evaluate the cells')
    edit(evaluate, "def evaluate_run(", "# evaluation proper\ndef evaluate_run(")
    assert dry_run() == {}

    edit(evaluate, "log = logging.getLogger(__name__)", 'log = logging.getLogger("emergence.evaluate")')
    counts = dry_run()
    assert counts["evaluate"] == 2 and counts["aggregate"] == 1  # both cells of the tiny study
    assert "train_ladder" not in counts and "make_task" not in counts

    edit(repo / "emergence/ladder/train.py", "log = logging.getLogger(__name__)",
         'log = logging.getLogger("emergence.ladder.train")')
    counts = dry_run()
    assert counts["train_ladder"] == 1 and counts["evaluate"] == 2 and "make_task" not in counts
