"""bench/seeds.py on the smoke study with two seeds: the seed dimension of the real workflow, and the report; its
rehearsal of another CPU type's kernels."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import OFFLINE, REPO


@pytest.mark.workflow
@pytest.mark.slow  # a whole study with two seeds (~3 min): .ci/run runs it with `pytest -m slow`
def test_seeds_bench_trains_every_seed_and_reports_each(tmp_path):
    # where this CPU has AVX2 (any recent x86), train with only its kernels, as another CPU type would
    kernels = ["--cpu-kernels", "avx2"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/seeds.py"), "--config", str(REPO / "tests/configs/smoke.yaml"),
         "--seeds", "0", "1", "--workdir", str(tmp_path), *kernels],
        capture_output=True, text=True, env={**os.environ, **OFFLINE},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    machines = [json.loads(path.read_text())["machine"] for path in tmp_path.glob("results/**/model.json")]
    assert machines
    if kernels:
        assert {m["torch_cpu_capability"] for m in machines} == {"AVX2"}
    overlay = yaml.safe_load((tmp_path / "results/seeds-config.yaml").read_text())
    assert overlay["study"] == "seeds" and overlay["models"][0]["seeds"] == [0, 1]

    latest = tmp_path / "results/seeds/latest"
    cells = pd.read_parquet(latest / "cells.parquet")
    smoke = yaml.safe_load((REPO / "tests/configs/smoke.yaml").read_text())
    ladder = smoke["models"][0]
    per_seed = len(ladder["widths"]) * ladder["checkpoints"] * len(smoke["tasks"]) * len(smoke["strategies"])
    assert cells.groupby("seed").size().to_dict() == {0: per_seed, 1: per_seed}
    table = pd.read_csv(latest / "tables/emergence.csv")
    assert (table.n_seeds == 2).all()  # the study's verdicts pool both seeds

    # one line per seed (a 60k-token ladder learns nothing: no subtask emerges), then the verdict
    assert re.search(r"^\s+0  \(none\); 0 distinct emergence scale\(s\)$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\s+1  \(none\); 0 distinct emergence scale\(s\)$", proc.stdout, re.M), proc.stdout
    assert "distinct emergence scales (within one strategy) in every seed: False" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "seed_robust: false"


def test_seeds_bench_refuses_other_kernels_in_this_checkout():
    """Models are keyed by config and code, not machine: other kernels in this checkout's results would reuse them."""
    proc = subprocess.run([sys.executable, str(REPO / "bench/seeds.py"), "--cpu-kernels", "avx2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--cpu-kernels avx2 needs a --workdir of its own" in proc.stderr, proc.stderr
