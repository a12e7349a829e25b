"""bench/plateau.py: the pipeline's own runs with a held-out loss per operation, and the escape it reports."""

import re
import subprocess
import sys

import yaml

from emergence.config import check_config
from emergence.ladder import plan
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import plateau  # noqa: E402  (a script, not a package module)

DEFAULT = check_config(yaml.safe_load((REPO / "config.yaml").read_text()))


def test_a_bench_run_has_the_settings_the_study_plans_for_it():
    family = DEFAULT["models"][0]
    s = plateau.run_settings(DEFAULT, 64, 2, None)
    assert (s.width, s.seed, s.checkpoints) == (64, 2, 1)
    assert s.train_tokens == plan.run_tokens(family["train_tokens"], 64, 96, family["token_width_exponent"])
    assert s.lr == plan.peak_lr(family["lr"], 64, family["lr_scaling_width"])
    assert dict(s.operations) == family["operations"]
    assert plateau.run_settings(DEFAULT, 64, 2, 123_000).train_tokens == 123_000


def test_escape_is_the_first_measurement_below_the_threshold():
    assert plateau.escape([100, 200, 300, 400], [0.7, 0.5, 0.2, 0.4], 0.3) == 300
    assert plateau.escape([100, 200], [0.7, 0.5], 0.3) is None


def test_bench_prints_every_seed_and_operation_with_its_final_loss():
    config = check_config(yaml.safe_load((REPO / "tests/configs/smoke.yaml").read_text()))
    args = ["--config", str(REPO / "tests/configs/smoke.yaml"), "--width", "16", "--tokens", "20000", "--every", "10"]
    run = subprocess.run([sys.executable, str(REPO / "bench/plateau.py"), *args, "--seeds", "0", "1", "--threshold",
                          "2.6"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = {int(m[1]): m[2] for m in re.finditer(r"^\s+(\d+)  (.+)$", run.stdout, re.M)}
    assert sorted(lines) == [0, 1]
    operations = [name for name, weight in config["models"][0]["operations"].items() if weight > 0]
    for line in lines.values():
        cells = dict(re.findall(r"(\w+) (?:never|[\d.]+M \(\d+%\)), ([\d.]+)", line))
        assert sorted(cells) == sorted(operations)
        assert all(0 < float(loss) < 5 for loss in cells.values())  # untrained: near ln(99) = 4.6
    for name in operations:
        assert re.search(rf"^{name}: escaped in \d of 2 seeds", run.stdout, re.M)
    # the same seed retrains to the same curve
    again = subprocess.run([sys.executable, str(REPO / "bench/plateau.py"), *args, "--seeds", "1", "--threshold", "2.6"],
                           capture_output=True, text=True)
    assert re.search(r"^\s+1  (.+)$", again.stdout, re.M)[1] == lines[1]
