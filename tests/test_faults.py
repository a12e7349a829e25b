"""Bad input and faults: each case ends in a message that names the problem and the fix, with every finished
result intact (docs/reliability.md lists every case of `pytest -m faults`, here and in test_config/test_hub).

Data cases damage a real task folder; runtime cases kill, fill or double-start real processes; the workflow
cases run the tiny study (tests/configs/tiny.yaml, up to its `aggregate` rule) in fresh directories.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from emergence.config import check_config
from emergence.evaluate import evaluate_cells
from emergence.io import DataError, DiskFullError, atomic_path
from emergence.ladder.train import TrainingDiverged, TrainSettings, train_ladder_run
from emergence.strategies import load_strategy
from emergence.study import plan_study
from emergence.tasks import bigbench, lm_eval_tasks
from emergence.tasks.arithmetic import write_arithmetic_task
from emergence.tasks.views import validate_task_dir
from tests.conftest import OFFLINE, REPO, SNAKEMAKE, snakemake
from tests.hub_server import closed_port_url

pytestmark = pytest.mark.faults

TINY = REPO / "tests/configs/tiny.yaml"
ZERO_SHOT = load_strategy("0shot")


# ------------------------------------------------------------------------------------------------------ data
@pytest.fixture
def task_dir(tmp_path) -> Path:
    """A real task folder as the pipeline writes it (4 test documents, 2 exemplars)."""
    path = tmp_path / "addition_3digit-0123abcd"
    write_arithmetic_task("addition_3digit", path, n_eval=4, n_fewshot_pool=2, seed=1)
    return path


def damage(path: Path, line: int, content: bytes) -> None:
    """Replace line `line` (1-based) of a JSON Lines file."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = content
    path.write_bytes(b"\n".join(lines))


def without_answer(path: Path, line: int) -> None:
    record = json.loads(path.read_text().split("\n")[line - 1])
    del record["answer"]
    damage(path, line, json.dumps(record).encode())


REBUILD = r"This task folder is written by the pipeline: delete .*addition_3digit-0123abcd and rerun"


@pytest.mark.parametrize("hurt, message", [
    pytest.param(lambda d: damage(d / "test.jsonl", 3, b'{"question": "Q: What is 1 plus 2?", "answer": '),
                 r"test.jsonl:3: not valid JSON \(Expecting value at column 48\); each line must hold one JSON object: "
                 r"fix or remove line 3\.", id="malformed-jsonl-line"),
    pytest.param(lambda d: (d / "test.jsonl").write_bytes(b""),
                 r"test.jsonl holds no records \(the file is empty\); it needs one JSON object per line\.",
                 id="empty-task-file"),
    pytest.param(lambda d: without_answer(d / "test.jsonl", 2),
                 r"test.jsonl:2: the record has no 'answer' field \(it has: .*question.*\); every record needs "
                 r"question, answer\. ", id="record-without-target"),
    pytest.param(lambda d: damage(d / "fewshot.jsonl", 2, '{"question": "caf\u00e9"}'.encode("latin-1")),
                 r"fewshot.jsonl:2: not UTF-8 text \(byte 0xe9 at offset \d+\); save the file as UTF-8",
                 id="non-utf8-text"),
    pytest.param(lambda d: damage(d / "fewshot.jsonl", 1, b'["Q: What is 1 plus 2?", "3"]'),
                 r"fewshot.jsonl:1: a JSON list where a JSON object \(one record per line\) belongs",
                 id="record-not-an-object"),
])
def test_bad_task_data_names_the_file_and_line(task_dir, hurt, message):
    hurt(task_dir)
    with pytest.raises(DataError, match=message + ".*" + REBUILD):
        validate_task_dir(task_dir, ZERO_SHOT)


def test_evaluation_stops_on_bad_data_before_loading_a_model(task_dir, tmp_path):
    """The check runs where evaluation starts, before any model is looked for (there is none here) and before
    any Parquet is written."""
    damage(task_dir / "test.jsonl", 2, b"{not json")
    with pytest.raises(DataError, match=r"test.jsonl:2: not valid JSON"):
        evaluate_cells(tmp_path / "no-model-needed", task_dir, ZERO_SHOT, tmp_path / "cell.parquet")
    assert not list(tmp_path.glob("*.parquet"))


def test_an_lm_eval_task_file_with_a_record_without_its_target_is_named(tmp_path):
    """A user's lm-eval task folder (`lm_eval_task_dirs`): `datasets` would fill the missing label with None."""
    data = tmp_path / "docs.jsonl"
    data.write_text('{"q": "1 + 1 =", "options": ["2", "3"], "label": 0}\n{"q": "2 + 2 =", "options": ["4", "5"]}\n')
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/doubles.yaml").write_text(yaml.safe_dump({
        "task": "doubles", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": "options",
        "doc_to_target": "label", "metric_list": [{"metric": "acc"}]}))
    lm_eval_tasks.write_lm_eval_task("doubles", tmp_path / "task", [str(tmp_path / "tasks")], random_baseline=None)
    message = (rf"{re.escape(str(data))}:2: the record has no 'label' field \(it has: options, q\); every record "
               r"needs label\.$")
    with pytest.raises(DataError, match=message):
        validate_task_dir(tmp_path / "task", ZERO_SHOT)


@pytest.fixture
def bigbench_source(tmp_path) -> Path:
    """An extracted BIG-bench task folder (a copy of the word_unscrambling fixture)."""
    return Path(shutil.copytree(REPO / "tests/fixtures/bigbench/word_unscrambling", tmp_path / "word_unscrambling"))


def test_a_bigbench_json_syntax_error_names_the_file_and_line(bigbench_source, tmp_path):
    task = bigbench_source / "task.json"
    task.write_text(task.read_text().replace('"examples": [', '"examples": [,', 1))
    line = task.read_text()[:task.read_text().index("[,")].count("\n") + 1
    message = (rf"cannot read BIG-bench task 'word_unscrambling': {re.escape(str(task))}:{line}:\d+: not valid JSON "
               rf"\(Expecting value\).*delete {re.escape(str(bigbench_source))} and rerun to extract it again")
    with pytest.raises(bigbench.BigBenchError, match=message):
        bigbench.write_bigbench_task("word_unscrambling", bigbench_source, tmp_path / "out", n_eval=4,
                                     n_fewshot_pool=2, seed=1)
    assert not (tmp_path / "out").exists()


def test_a_bigbench_example_without_a_target_is_named(bigbench_source, tmp_path):
    task = bigbench_source / "task.json"
    spec = json.loads(task.read_text())
    del spec["examples"][3]["target"]
    task.write_text(json.dumps(spec))
    message = (rf"{re.escape(str(task))}: examples\[3\] needs 'input' and 'target' \(or 'target_scores' for multiple "
               r"choice\); it has input\.")
    with pytest.raises(bigbench.BigBenchError, match=message):
        bigbench.write_bigbench_task("word_unscrambling", bigbench_source, tmp_path / "out", n_eval=4,
                                     n_fewshot_pool=2, seed=1)


# --------------------------------------------------------------------------------------------------- runtime
def test_a_failed_job_shows_its_reason_on_the_console_and_the_traceback_in_its_log(tmp_path):
    """A job script (as Snakemake runs it) whose step fails: the one-line reason reaches the console."""
    log = tmp_path / "logs/job.log"
    script = ("import sys\n"
              "from emergence.io import DataError\n"
              "from emergence.workflow import logged\n"
              "with logged(sys.argv[1]):\n"
              "    raise DataError('tasks/x/test.jsonl:3: not valid JSON; fix or remove line 3.')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("job failed: DataError: tasks/x/test.jsonl:3: not valid JSON; fix or remove line "
                                  f"3.\n(traceback in {log})\n")
    assert "Traceback" in log.read_text() and "not valid JSON" in log.read_text()


def test_exploding_loss_stops_with_the_step_and_the_config_keys_to_change(tmp_path):
    """An absurd learning rate in the config: the run stops at the step where the loss exploded, naming the
    real config keys (models[].lr of that family, its warm-up), and keeps no checkpoint."""
    config = check_config({"study": "diverge", "tasks": ["addition_3digit"], "strategies": ["0shot"],
                           "models": [{"name": "hot", "source": "ladder", "widths": [16], "lr": 10.0,
                                       "train_tokens": 20000, "checkpoints": 1, "operations": {"addition_3digit": 1}}]})
    (run,) = plan_study(config, REPO).runs.values()
    with pytest.raises(TrainingDiverged, match=r"^run hot-d16L2-s0: training diverged, loss [\d.e+]+ at step 2/\d+\. "
                                               r"Lower lr \(now 10.0\) of the family 'hot' in the config "
                                               r"\(models\[\]\.lr\), or lengthen its warmup "
                                               r"\(models\[\]\.warmup_fraction, now 0.05\), and rerun\.$"):
        train_ladder_run(TrainSettings.from_config(run["settings"]), tmp_path / "run")
    assert not list((tmp_path / "run").iterdir())


def full_disk_after_writing(monkeypatch) -> None:
    """DataFrame.to_parquet writes its bytes, then the disk is full (as pyarrow reports ENOSPC)."""
    write = pd.DataFrame.to_parquet

    def to_parquet(frame, path, *args, **kwargs):
        write(frame, path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root and permission to mount; skipped elsewhere)."""
    path = tmp_path / "small"
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("disk", ["injected", "tmpfs"])
def test_a_full_disk_while_writing_parquet_keeps_the_old_file(disk, tmp_path, monkeypatch, request):
    import numpy as np

    folder = request.getfixturevalue("small_disk") if disk == "tmpfs" else tmp_path
    path = folder / "cells.parquet"
    with atomic_path(path) as tmp:
        pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(tmp)
    before = path.read_bytes()
    if disk == "injected":
        full_disk_after_writing(monkeypatch)
    big = pd.DataFrame({"x": np.random.default_rng(0).random(100_000)})  # 800 kB of incompressible floats
    message = (rf"^\[Errno 28\] disk full \(or quota exceeded\) while writing {re.escape(str(path))}: .*cells.parquet "
               r"keeps its previous content and no partial file was left\. Free space on that file system "
               r"\(`df -h .*`\) or move results/ to a larger disk, then rerun: finished results are kept")
    with pytest.raises(DiskFullError, match=message):
        with atomic_path(path) as tmp:
            big.to_parquet(tmp)
    assert path.read_bytes() == before and [p.name for p in folder.iterdir()] == ["cells.parquet"]


def test_kill_9_during_a_parquet_write_leaves_the_old_file_and_no_parquet(tmp_path):
    """A process killed mid-write leaves only a hidden temporary file; readers glob `*.parquet` and never see it."""
    path = tmp_path / "cell.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(path)
    before = path.read_bytes()
    script = ("import sys, time, pandas as pd\n"
              "from emergence.io import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    pd.DataFrame({'x': range(1000)}).to_parquet(tmp)\n"
              "    open(tmp, 'r+b').truncate(100)  # half of it on disk\n"
              "    print('writing', flush=True)\n"
              "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline() == "writing\n"
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert path.read_bytes() == before and list(tmp_path.rglob("*.parquet")) == [path]
    (leftover,) = set(tmp_path.iterdir()) - {path}
    assert re.fullmatch(r"\.cell\.parquet\.\w+\.tmp", leftover.name)


# -------------------------------------------------------------------------------------------------- workflow
def start(workdir: Path, *args: str) -> subprocess.Popen:
    """The tiny study up to `aggregate` in the background, in its own process group (output in workdir/run.log)."""
    env = {**os.environ, **OFFLINE}
    with open(workdir / "run.log", "w") as log:
        return subprocess.Popen([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                                 "--configfile", str(TINY), "--cores", "1", *args, "aggregate"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, workdir: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"gave up waiting (exit {proc.poll()}):\n{(workdir / 'run.log').read_text()[-4000:]}")
        time.sleep(0.05)


def tiny(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return snakemake(workdir, "--configfile", str(TINY), *args, check=check)


def files(folder: Path, pattern: str = "*.parquet") -> list[Path]:
    return sorted(folder.rglob(pattern)) if folder.exists() else []


def cells_parquet(workdir: Path) -> Path:
    (path,) = (workdir / "results/tiny").glob("*/cells.parquet")
    return path


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory):
    """A run, and a second invocation on the same directory as soon as the first holds its lock."""
    workdir = tmp_path_factory.mktemp("concurrent")
    first = start(workdir)
    wait_for(lambda: files(workdir / ".snakemake/locks", "*.lock"), first, workdir)
    second = tiny(workdir, "--cores", "1", "aggregate", check=False)
    first.wait(timeout=300)
    return workdir, first.returncode, second


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run killed (kill -9 of its whole process group) while evaluating its second cell, then resumed."""
    workdir = tmp_path_factory.mktemp("killed")
    cells, logs = workdir / "results/cells", workdir / "results/logs/evaluate"
    proc = start(workdir)
    wait_for(lambda: len(files(cells)) == 1 and len(files(logs, "*.log")) == 2, proc, workdir)
    time.sleep(0.5)  # the second evaluation job is running (it takes seconds)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files(cells)}
    plain = tiny(workdir, "--cores", "1", "aggregate", check=False)
    unlock = tiny(workdir, "--unlock")
    resumed = tiny(workdir, "--cores", "1", "--rerun-incomplete", "aggregate")
    return workdir, at_kill, plain, unlock, resumed


@pytest.mark.workflow
def test_a_second_invocation_on_the_same_directory_refuses_and_the_first_completes(concurrent):
    workdir, first_returncode, second = concurrent
    # Snakemake checks for incomplete outputs before it takes the lock: while the first run has a job in progress,
    # the second meets that job's output first and refuses naming it; otherwise it meets the lock.
    assert second.returncode == 1
    locked = ("LockException:\nError: Directory cannot be locked. Please make sure that no other Snakemake process "
              f"is trying to create the same files in the following directory:\n{workdir}\n") in second.stderr
    busy = re.search(r"IncompleteFilesException:\nThe files below seem to be incomplete.*\nIncomplete files:\n"
                     r"results/", second.stderr, re.S) is not None
    assert locked or busy, second.stderr[-2000:]
    assert not locked or "It can be removed with the --unlock argument." in second.stderr
    assert first_returncode == 0, (workdir / "run.log").read_text()[-4000:]
    assert len(files(workdir / "results/cells")) == 2 and pd.read_parquet(cells_parquet(workdir)).shape[0] == 2


@pytest.mark.workflow
def test_kill_9_mid_cell_then_unlock_and_rerun_keeps_finished_cells(killed):
    workdir, at_kill, plain, unlock, resumed = killed
    # only the finished cell exists, complete; the killed one left no Parquet
    (finished,) = at_kill
    assert len(pd.read_parquet(finished)) == 8
    # a plain rerun refuses, naming the stale lock and --unlock, or (Snakemake checks it first) the killed job's
    # incomplete folder and --rerun-incomplete; --unlock then --rerun-incomplete resumes
    stale_lock = ("Directory cannot be locked" in plain.stderr and "the remaining lock was likely caused by a kill "
                  "signal or a power loss. It can be removed with the --unlock argument." in plain.stderr)
    incomplete = "Incomplete files:" in plain.stderr and "--rerun-incomplete" in plain.stderr
    assert plain.returncode == 1 and (stale_lock or incomplete), plain.stderr[-2000:]
    assert "Unlocked working directory." in unlock.stderr
    assert re.search(r"^evaluate\s+1$", resumed.stderr, re.M), resumed.stderr[-3000:]  # only the killed cell
    assert (finished.stat().st_mtime_ns, finished.read_bytes()) == at_kill[finished]
    assert len(files(workdir / "results/cells")) == 2 and pd.read_parquet(cells_parquet(workdir)).shape[0] == 2


@pytest.mark.workflow
def test_the_same_config_twice_gives_byte_identical_cells(concurrent, killed):
    """Two fresh directories (the second killed mid-cell and resumed): byte-identical Parquet on CPU."""
    first, second = concurrent[0], killed[0]
    assert cells_parquet(first).read_bytes() == cells_parquet(second).read_bytes()
    assert (cells_parquet(first).with_name("samples.parquet").read_bytes()
            == cells_parquet(second).with_name("samples.parquet").read_bytes())


@pytest.mark.workflow
def test_no_network_for_a_hub_model_is_said_before_any_job(tmp_path):
    down = closed_port_url()
    config = {"study": "hub", "tasks": ["addition_3digit"], "strategies": ["0shot"],
              "models": [{"name": "tiny", "source": "hf", "members": [{"repo": "org/tiny", "train_tokens": 1000}]}]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    env = {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": down, "HF_HOME": str(tmp_path / "hf")}
    run = snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "study.yaml"), env=env, check=False)
    assert run.returncode != 0 and not (tmp_path / "results").exists()
    assert f"Cannot start:\n  - no network: cannot reach the Hugging Face hub at {down}" in run.stderr
    assert "HF_HUB_OFFLINE=1" in run.stderr and "source: local" in run.stderr


def test_gpu_oom_halves_the_batch_and_the_cell_completes(tiny_model, tmp_path, monkeypatch, caplog):
    """CUDA's out-of-memory error (the real exception type, raised on CPU above 2 rows) during a cell: the backend
    halves its batch, the cell completes, and its Parquet equals that of an unconstrained run."""
    import torch

    from emergence import evaluate

    write_arithmetic_task("addition_3digit", tmp_path / "task", n_eval=12, n_fewshot_pool=4, seed=0)
    reference = evaluate_cells(tiny_model, tmp_path / "task", ZERO_SHOT, tmp_path / "reference.parquet",
                               batch_size=16)
    load_lm = evaluate.load_lm

    def constrained(*args, **kwargs):
        lm = load_lm(*args, **kwargs)
        real_forward = lm.engine.forward_fn

        def forward(input_ids, **kw):
            if input_ids.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("injected: more than 2 rows")
            return real_forward(input_ids, **kw)

        lm.engine.forward_fn = forward
        return lm

    monkeypatch.setattr(evaluate, "load_lm", constrained)
    with caplog.at_level("WARNING", logger="emergence.backend"):
        evaluate_cells(tiny_model, tmp_path / "task", ZERO_SHOT, tmp_path / "cell.parquet", batch_size=16)
    halvings = re.findall(r"out of memory with (\d+) rows per batch; retrying with (\d+)", caplog.text)
    assert halvings and all(int(after) == int(before) // 2 for before, after in halvings)
    written = pd.read_parquet(tmp_path / "cell.parquet")
    assert len(written) == 12 and (written.generation == reference.generation).all()
    assert (written.target_logprob - reference.target_logprob).abs().max() < 1e-4
