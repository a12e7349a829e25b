"""presets/gpu.yaml plans here (no GPU needed for a dry run) and runs end to end on the CPU at a tiny budget:
modified_arithmetic documents, the real items, both subtasks."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, snakemake


def test_gpu_preset_dry_run_plans_every_model(tmp_path):
    proc = snakemake(tmp_path, "-n", "--configfile", str(REPO / "presets/gpu.yaml"))
    assert "train_ladder" in proc.stdout and "evaluate" in proc.stdout
    assert "bigbench_archive" not in proc.stdout  # its subtasks ship with the package


@pytest.mark.workflow
@pytest.mark.slow  # the whole preset's workflow (~80 s): .ci/run runs it with `pytest -m slow`
def test_gpu_preset_runs_on_cpu_at_a_tiny_budget(tmp_path):
    config = yaml.safe_load((REPO / "presets/gpu.yaml").read_text())
    family = config["models"][0]
    family.update(device="cpu", widths=[16], train_tokens=20_000, batch_rows=16, checkpoints=1)
    config.update(study="gpu_tiny", evaluation={"device": "cpu"},
                  task_defaults={"n_eval": 8, "n_fewshot_pool": 2}, analysis={"bootstrap_samples": 100})
    path = tmp_path / "gpu_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(path))
    cells = pd.read_parquet(tmp_path / "results/gpu_tiny/latest/cells.parquet")
    assert sorted(cells.task) == ["modified_arithmetic.three_digit_addition_control",
                                  "modified_arithmetic.three_digit_addition_plus_one"]
    samples = pd.read_parquet(tmp_path / "results/gpu_tiny/latest/samples.parquet")
    assert samples.prompt.str.startswith("In the following lines, the symbol -> represents").all()
    assert Path(tmp_path / "results/models").exists()
