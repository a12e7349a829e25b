"""Published results as a study source: the shipped sets through the real workflow, refusals of bad files, and an
lm-eval 0.4 results file of the project's own checkpoint read back and overlaid on the pipeline's own cell."""

import hashlib
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from lm_eval import simple_evaluate
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager

from emergence.config import ConfigError, check_config
from emergence.io import sha256_file
from emergence.published.cells import DATA
from emergence.published.readers import read_lm_eval_json
from emergence.strategies import load_strategy
from emergence.tasks.views import write_views
from tests.conftest import REPO, snakemake

PRESET = REPO / "presets/published.yaml"


def test_shipped_data_is_small_licensed_and_matches_its_provenance():
    provenance = json.loads((DATA / "PROVENANCE.json").read_text())
    for name, sha in provenance["shipped_sha256"].items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == sha
        assert provenance[name]["commit"] and provenance[name]["license"] == "Apache-2.0"
    assert len(provenance["pythia.csv"]["sha256"]) > 500  # one checksum per upstream result file
    assert sum(p.stat().st_size for p in DATA.iterdir() if p.is_file()) < 1.2e6
    assert "Apache License" in (DATA / "LICENSE").read_text()


def test_old_lm_eval_layout(tmp_path):
    path = tmp_path / "70m_step3000.json"
    path.write_text(json.dumps({
        "results": {"lambada_openai": {"ppl": 40.5, "ppl_stderr": 1.5, "acc": 0.31, "acc_stderr": 0.006}},
        "versions": {"lambada_openai": 0},
        "config": {"model": "hf-causal", "model_args": "pretrained=EleutherAI/pythia-70m,revision=step3000",
                   "num_fewshot": 5}}, indent=1))
    records = {r["metric"]: r for r in read_lm_eval_json(path)}
    assert set(records) == {"ppl", "acc"}
    assert records["acc"]["value"] == 0.31 and records["acc"]["stderr"] == 0.006
    assert (records["acc"]["model"], records["acc"]["step"], records["acc"]["num_fewshot"]) == \
        ("EleutherAI/pythia-70m", 3000, 5)
    assert records["acc"]["line"] == 3  # where the task's results start (line 3 of the indented file)


def published_config(family: dict, **extra) -> dict:
    return {"study": "bad", "models": [{"name": "pub", "source": "published", **family}], "tasks": [],
            "strategies": ["0shot", "2shot"], **extra}


def refusal(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(config)
    return str(err.value)


@pytest.mark.faults
def test_bad_published_files_are_refused_with_file_line_or_model(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text("model,task,metric,value,num_fewshot,params,nonembedding_params,train_tokens\n"
                     "org/a,arith,acc,0.5,2,1000,800,5000\norg/b,arith,acc,0.7,2,,,\n")
    message = refusal(published_config({"files": [str(table)], "tasks": {"arith": "acc"}}))
    assert "model 'org/b'" in message and f"{table}, line 3" in message and "train_tokens" in message
    assert "org/a" not in message  # scale metadata from the file; FLOPs = 6 x non-embedding params x tokens

    message = refusal(published_config({"files": [str(table)], "tasks": {"arith": "accuracy"}}))
    assert "unknown metric 'accuracy'" in message and "acc" in message and str(table) in message

    message = refusal(published_config({"dataset": "obsscaling", "tasks": {"arithmetic_3da": "acc"},
                                        "members": [{"model": "meta-llama/Llama-9-7b", "params": 1}]}))
    assert "model 'meta-llama/Llama-9-7b' is not in" in message and "obsscaling.csv" in message

    broken = tmp_path / "results.json"
    broken.write_text('{"results": {\n  "lambada": {"acc": 0.5,}\n}}')
    message = refusal(published_config({"files": [str(broken)], "tasks": {"lambada": "acc"}}))
    assert f"{broken}, line 2" in message

    # the workflow refuses it before any job
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(published_config({"files": [str(table)], "tasks": {"arith": "acc"}})))
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", str(config), check=False)
    assert proc.returncode != 0 and "model 'org/b'" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_empty_tasks_only_when_every_family_is_published():
    message = refusal({"study": "x", "models": [{"name": "l", "source": "ladder", "widths": [16]}], "tasks": [],
                       "strategies": ["0shot"]})
    assert "tasks is empty" in message


@pytest.mark.workflow
@pytest.mark.slow  # the whole preset (~2 min): .ci/run runs it with `pytest -m slow`
def test_published_preset_real_families(tmp_path):
    snakemake(tmp_path, "--cores", "2", "--configfile", str(PRESET))
    latest = tmp_path / "results/published/latest"
    cells = pd.read_parquet(latest / "cells.parquet")
    assert (cells.source == "published").all()

    pythia = cells[cells.family == "pythia"]
    assert pythia.run.nunique() >= 5 and pythia.groupby("run").checkpoint_step.nunique().min() >= 10
    assert (pythia.train_flops == 6 * pythia.nonembedding_params * pythia.train_tokens).all()
    assert (pythia.train_tokens == pythia.checkpoint_step * 2097152).all()
    public = cells[cells.published_file.str.contains("obsscaling.csv")]
    assert public.published_model.nunique() >= 60 and public.family.nunique() >= 15

    # the numbers are the upstream files': Pythia-12b's final zero-shot LAMBADA and Llama-2-7b's 3-digit addition
    shipped = pd.read_csv(DATA / "pythia.csv")
    upstream = shipped[(shipped.model == "EleutherAI/pythia-12b") & (shipped.step == 143000) &
                       (shipped.num_fewshot == 0) & (shipped.task == "lambada_openai") & (shipped.metric == "acc")]
    lambada = cells[(cells.published_model == "EleutherAI/pythia-12b") & (cells.task == "lambada_openai") &
                    (cells.strategy == "0shot") & cells.final_checkpoint]
    assert len(lambada) == 1 and lambada.exact_match.iloc[0] == upstream.value.iloc[0]
    assert round(lambada.exact_match.iloc[0], 4) == 0.7046 and lambada.checkpoint_step.iloc[0] == 143000
    assert "pythia-12b/zero-shot/12b_step143000.json" in lambada.published_file.iloc[0]
    llama = cells[(cells.published_model == "meta-llama/Llama-2-7b-hf") & (cells.task == "arithmetic_3da")]
    assert llama.strategy.tolist() == ["2shot"] and llama.exact_match.iloc[0] == 0.9315

    # aggregates only: no per-sample metric; a continuous metric only where the file has one (LAMBADA perplexity)
    assert cells.token_edit_distance.isna().all() and cells.p_all_tokens.isna().all()
    assert cells[cells.task != "lambada_openai"].target_ce_per_token.isna().all()
    assert cells[cells.task == "lambada_openai"].target_ce_per_token.notna().all()
    # an empty upstream field stays missing (Yi-1.5-6B, DeepSeek-V2, ... have no 3-digit addition result)
    obs = pd.read_csv(DATA / "obsscaling.csv")
    empty = obs[obs.arithmetic_3da_2_acc.isna() & obs.train_tokens.notna()].model
    assert len(empty) and cells[cells.published_model.isin(empty) & (cells.task == "arithmetic_3da")].empty

    emergence = pd.read_csv(latest / "tables/emergence.csv")
    assert {"pythia", "Llama_2", "OPT"} <= set(emergence.family)
    for name in ("published_families", "grid_paper_vs_train_flops"):
        assert (latest / f"figures/{name}.png").stat().st_size > 20_000
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["published"]["pythia"] == {str(DATA / "pythia.csv"): sha256_file(DATA / "pythia.csv")}
    assert set(lambada.published_sha256) == {sha256_file(DATA / "pythia.csv")}
    rerun = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(PRESET))
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def lm_eval_results(model_dir: Path, task_dir: Path, out: Path) -> Path:
    """lm-eval's own run of a task's views on a checkpoint, saved as lm-eval saves `--output_path` results."""
    views = write_views(task_dir, load_strategy("0shot"), out / "views")
    tracker = EvaluationTracker(output_path=str(out / "lm_eval"))
    results = simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32",
                              tasks=[views["gen"], views["ll"]],
                              task_manager=TaskManager(include_path=str(out / "views"), include_defaults=False),
                              num_fewshot=0, device="cpu", batch_size=16, evaluation_tracker=tracker,
                              random_seed=1234, numpy_random_seed=1234, torch_random_seed=1234,
                              fewshot_random_seed=1234)
    results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=None)
    return next((out / "lm_eval").rglob("results_*.json"))


@pytest.mark.workflow
@pytest.mark.slow  # three studies and lm-eval's own HF run (~2 min): .ci/run runs it with `pytest -m slow`
def test_own_lm_eval_results_read_back_and_overlaid(tmp_path, tiny_model):
    model_dir = tmp_path / "adder"
    shutil.copytree(next(p.parent for p in tiny_model.rglob("model.json")), model_dir)
    own = {"study": "own", "models": [{"name": "mine", "source": "local", "members": [{"path": str(model_dir)}]}],
           "tasks": ["addition_3digit"], "strategies": ["0shot"], "task_defaults": {"n_eval": 16, "n_fewshot_pool": 4},
           "analysis": {"bootstrap_samples": 200}}
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(own))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    cell = pd.read_parquet(tmp_path / "results/own/latest/cells.parquet").iloc[0]

    task_dir = next((tmp_path / "results/tasks").glob("addition_3digit-*"))
    results = lm_eval_results(model_dir, task_dir, tmp_path)
    read = read_lm_eval_json(results)
    assert {r["model"] for r in read} == {str(model_dir)} and {r["num_fewshot"] for r in read} == {0}
    records = [r for r in read if r["metric"].startswith("exact_match")]
    assert len(records) == 1 and records[0]["value"] == pytest.approx(cell.exact_match, abs=1e-9)
    # the likelihood view's perplexity is exp of the cell's mean target cross-entropy (lm-eval's HF model against
    # the project's backend: equal within 1e-4)
    perplexity = [r for r in read if r["metric"] == "perplexity"]
    assert len(perplexity) == 1 and math.log(perplexity[0]["value"]) == pytest.approx(cell.target_ce_total, rel=1e-4)

    meta = json.loads((model_dir / "model.json").read_text())
    published = {"name": "published_mine", "source": "published", "files": [str(results.parent)],
                 "tasks": {"addition_3digit": {"metric": records[0]["metric"], "file_task": records[0]["task"]}}}
    config.write_text(yaml.safe_dump({**own, "models": [*own["models"], published]}))
    proc = snakemake(tmp_path, "--cores", "2", "--configfile", str(config), check=False)
    assert proc.returncode != 0 and f"model '{model_dir}'" in proc.stderr  # no scale metadata in the file

    published["members"] = [{"model": str(model_dir), "params": meta["params"], "train_tokens": meta["train_tokens"],
                             "nonembedding_params": meta["nonembedding_params"]}]
    config.write_text(yaml.safe_dump({**own, "models": [*own["models"], published]}))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    overlay = pd.read_csv(tmp_path / "results/own/latest/tables/published_overlay.csv")
    assert len(overlay) == 1
    row = overlay.iloc[0]
    assert (row.model, row.task, row.strategy) == (cell.model, "addition_3digit", "0shot")
    assert row.own == cell.exact_match and row.published == pytest.approx(cell.exact_match, abs=1e-9)
    assert row.difference == pytest.approx(0, abs=1e-9) and row.within_interval
    assert (tmp_path / "results/own/latest/figures/published_overlay.png").stat().st_size > 10_000
