"""BIG-bench data: the archive (served over HTTP on 127.0.0.1, checksummed), extraction of named tasks,
conversion in BIG-bench's own formatting, per-choice and generative scoring on a real checkpoint, lm-eval tasks
by name, and the workflow on fixture excerpts (tests/fixtures/bigbench; the real archive is never downloaded)."""

import copy
import hashlib
import http.server
import json
import re
import tarfile
import threading

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy.special import softmax

from emergence.config import ConfigError, check_config
from emergence.evaluate import evaluate_cells
from emergence.models.modeldir import checkpoint_dirs
from emergence.strategies import load_strategy
from emergence.study import plan_study
from emergence.tasks import bigbench, catalog, lm_eval_tasks
from tests.conftest import REPO, snakemake

FIXTURES = REPO / "tests/fixtures/bigbench"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def pack_archive(path) -> str:
    """The fixture tasks in the sdist's layout; returns the archive's sha256."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(FIXTURES, arcname=bigbench.TASKS_PREFIX.rstrip("/"))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "bigbench-1.0.0.tar.gz"
    return path, pack_archive(path)


@pytest.fixture
def server(archive):
    """An HTTP server on 127.0.0.1 serving the archive's folder and counting GET requests."""
    folder, gets = archive[0].parent, []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            gets.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/{archive[0].name}", gets
    httpd.shutdown()


def test_the_shipped_index_is_what_build_index_makes_of_the_archive():
    """bigbench_index.json was built by `build_index` from the real archive: on the fixture excerpts (same files,
    fewer examples) it gives the same entries apart from the example counts."""
    built, shipped = bigbench.build_index(FIXTURES), bigbench.task_index()
    for name, entry in built.items():
        ignore = {"n_examples", "subtasks"}
        assert {k: v for k, v in entry.items() if k not in ignore} == \
            {k: v for k, v in shipped[name].items() if k not in ignore}, name
    assert built["modified_arithmetic"]["subtasks"] == ["modified_arithmetic.three_digit_addition_control"]
    assert built["truthful_qa"]["file"] == "truthful_qa/task_mc.json" and built["truthful_qa"]["multiple_choice"]


def test_fetch_archive_checks_the_pinned_sha256(archive, server, tmp_path):
    url, gets = server
    dest = bigbench.fetch_archive(tmp_path / "a.tar.gz", url=url, sha256=archive[1])
    assert dest.read_bytes() == archive[0].read_bytes() and len(gets) == 1
    with pytest.raises(bigbench.BigBenchError, match=f"expected {'0' * 64}.*deleted"):
        bigbench.fetch_archive(tmp_path / "b.tar.gz", url=url, sha256="0" * 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]  # no partial or bad file left behind


def test_fetch_archive_without_network_says_where_to_put_a_copy(tmp_path):
    closed = "http://127.0.0.1:9/bigbench-1.0.0.tar.gz"  # the discard port: nothing listens
    with pytest.raises(bigbench.BigBenchError, match=r"could not download .*copy bigbench-1\.0\.0\.tar\.gz .* to "):
        bigbench.fetch_archive(tmp_path / "a.tar.gz", url=closed, sha256="0" * 64)
    assert not any(tmp_path.iterdir())


def test_extract_takes_only_the_named_task(archive, tmp_path):
    path, sha = archive
    out = bigbench.extract_task(path, "modified_arithmetic", tmp_path / "modified_arithmetic", sha256=sha)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.json")) == [
        "task.json", "three_digit_addition_control/task.json"]
    with pytest.raises(bigbench.BigBenchError, match="'emoji_movie' is not in"):
        bigbench.extract_task(path, "emoji_movie", tmp_path / "emoji_movie", sha256=sha)
    with pytest.raises(bigbench.BigBenchError, match="does not have the pinned sha256"):
        bigbench.extract_task(path, "parsinlu_qa", tmp_path / "parsinlu_qa", sha256="0" * 64)


def test_task_names_resolve_expand_and_fail_with_close_matches():
    assert catalog.kind_of("word_unscrambling") == "bigbench"
    assert catalog.kind_of("addition_3digit") == "arithmetic"
    assert catalog.kind_of("truthfulqa_mc1") == "lm_eval"
    with pytest.raises(catalog.UnknownTask, match="Did you mean 'word_unscrambling'"):
        catalog.kind_of("word_unscrambleing")
    config = check_config({**copy.deepcopy(DEFAULT), "tasks": ["modified_arithmetic", "parsinlu_qa"]})
    tasks = [spec["task"] for spec in plan_study(config, REPO).tasks.values()]
    assert tasks == bigbench.task_index()["modified_arithmetic"]["subtasks"] + ["parsinlu_qa"]
    assert len(tasks) == 7


def test_few_shot_pool_of_a_small_task_is_checked_up_front():
    # conceptual_combinations.contradictions has 16 examples: the pool takes at most half
    config = {**copy.deepcopy(DEFAULT), "tasks": ["conceptual_combinations.contradictions"], "strategies": ["10shot"]}
    with pytest.raises(ConfigError, match="needs 10 exemplars but task 'conceptual_combinations.contradictions' "
                                          "has a few-shot pool of 8"):
        check_config(config)


def test_lm_eval_hub_task_fails_before_any_job_without_network(tmp_path):
    """A dry run lists the jobs; a real run stops before any job, saying what cannot be reached."""
    config = {**copy.deepcopy(DEFAULT), "study": "hub_tasks", "tasks": ["wic"]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    env = {"HF_DATASETS_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}
    dry = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "study.yaml"), env=env)
    assert "evaluate" in dry.stdout
    run = snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "study.yaml"), env=env, check=False)
    assert run.returncode != 0 and not (tmp_path / "results/models").exists()
    assert re.search(r"task 'wic' is an lm-eval task whose data comes from the Hugging Face hub \(aps/super_glue\), "
                     r"but http://127.0.0.1:9 is unreachable", run.stderr)


def convert(name, tmp_path, **settings):
    source = FIXTURES / bigbench.parent_of(name)
    meta = bigbench.write_bigbench_task(name, source, tmp_path / name, **{"n_eval": 4, "n_fewshot_pool": 4,
                                                                          "seed": 1, **settings})
    docs = [json.loads(line) for line in (tmp_path / name / "test.jsonl").read_text().splitlines()]
    return meta, docs


def test_conversion_keeps_bigbench_formatting(tmp_path):
    raw = json.loads((FIXTURES / "parsinlu_qa/task.json").read_text())["examples"]
    meta, docs = convert("parsinlu_qa", tmp_path)
    assert meta["multiple_choice"] and meta["metric"] == "mc_grade" and meta["random_baseline"] is None
    assert (meta["n_eval"], meta["n_fewshot_pool"]) == (4, 4)
    by_input = {e["input"]: e for e in raw}
    for doc in docs:  # default prefixes; choices appended in a permutation, scored in the file's order
        example = next(e for text, e in by_input.items() if doc["question"].startswith("\nQ: " + text))
        assert doc["question"].endswith("\nA: ") and doc["question"].count("\n  choice: ") == len(doc["choices"])
        assert doc["choices"] == list(example["target_scores"])
        assert example["target_scores"][doc["choices"][doc["gold"]]] == 1 and doc["answer"] == doc["choices"][doc["gold"]]

    meta, docs = convert("truthful_qa", tmp_path)  # its own prefixes, choices not appended, a task prefix
    assert meta["prompt"]["prefix"].startswith("Q: What is human life expectancy")
    assert all(d["question"].startswith("\nQ: ") and d["question"].endswith("\nA: ") for d in docs)
    assert not any("choice:" in d["question"] for d in docs)

    meta, docs = convert("international_phonetic_alphabet_transliterate", tmp_path)
    assert meta["metric"] == "bleu" and meta["prompt"]["stop"] == ["\n"] and meta["prompt"]["answer_regex"] is None
    assert meta["random_baseline"] == 0.0
    meta, _ = convert("modified_arithmetic.three_digit_addition_control", tmp_path, random_baseline=0.01)
    assert meta["prompt"]["separator"] == "\n\n" and meta["prompt"]["answer_regex"] == r"[-+]?\d+"
    assert meta["random_baseline"] == 0.01


def test_multiple_choice_cells_hold_every_choice_log_likelihood(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta, _ = convert("truthful_qa", tmp_path)
    prefix = meta["prompt"]["prefix"]
    table = evaluate_cells(tiny_model, tmp_path / "truthful_qa", load_strategy("1shot"), tmp_path / "tqa.parquet")
    assert len(table) == 4 and table.mc_grade.isin([0.0, 1.0]).all()
    for row in table.itertuples():
        assert len(row.choice_logprobs) == len(row.choices) >= 2
        probs = softmax(row.choice_logprobs)
        gold = list(row.choices).index(row.target)
        assert row.target_logprob == pytest.approx(row.choice_logprobs[gold])
        assert row.p_correct == pytest.approx(probs[gold]) and row.random_baseline == pytest.approx(1 / len(probs))
        assert row.answer == row.choices[int(np.argmax(row.choice_logprobs))]
        # BIG-bench's 1-shot layout: task prefix, an exemplar with its answer, the separator, the query
        assert row.prompt.startswith(prefix) and row.prompt.count("\nQ: ") == prefix.count("\nQ: ") + 2

    # the first choice's log-likelihood, recomputed with a plain forward pass
    row = table.iloc[0]
    checkpoint = checkpoint_dirs(tiny_model)[0]
    tokenizer, model = AutoTokenizer.from_pretrained(checkpoint), AutoModelForCausalLM.from_pretrained(checkpoint)
    context, choice = tokenizer.encode(row.prompt.rstrip(" ")), tokenizer.encode(" " + row.choices[0])
    with torch.no_grad():
        logits = model(torch.tensor([context + choice])).logits.log_softmax(-1)[0]
    direct = sum(logits[len(context) - 1 + i, t].item() for i, t in enumerate(choice))
    assert row.choice_logprobs[0] == pytest.approx(direct, abs=1e-4)


def test_generative_cells_score_exact_match_and_bleu(tiny_model, tmp_path):
    convert("international_phonetic_alphabet_transliterate", tmp_path)
    table = evaluate_cells(tiny_model, tmp_path / "international_phonetic_alphabet_transliterate",
                           load_strategy("0shot"), tmp_path / "ipa.parquet")
    assert table.bleu.between(0, 100).all() and table.choice_logprobs.isna().all()
    assert ((table.answer == table.target) == (table.exact_match == 1)).all()
    assert (table.target_logprob < 0).all() and (table.random_baseline == 0).all()


def test_lm_eval_tasks_from_a_folder_run_by_name(tiny_model, tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"q": f"{a} + {a} =", "options": [str(2 * a), str(2 * a + 1)], "label": 0})
                            + "\n" for a in (12, 34, 56)))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/doubles.yaml").write_text(yaml.safe_dump({
        "task": "doubles", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": "options",
        "doc_to_target": "label", "metric_list": [{"metric": "acc"}]}))
    dirs = [str(tmp_path / "tasks")]
    assert catalog.kind_of("doubles", dirs) == "lm_eval" and lm_eval_tasks.lm_eval_problem("doubles", dirs) is None
    lm_eval_tasks.write_lm_eval_task("doubles", tmp_path / "task", dirs, random_baseline=None)
    table = evaluate_cells(tiny_model, tmp_path / "task", load_strategy("0shot"), tmp_path / "doubles.parquet")
    assert (table.subtask == "doubles").all() and len(table) == 3
    assert table.choices.map(len).eq(2).all() and (table.random_baseline == 0.5).all()


@pytest.mark.workflow
@pytest.mark.slow  # a whole study (~2 min): .ci/run runs it with `pytest -m slow`
def test_bigbench_workflow_on_fixture_archive(tmp_path):
    """The rule chain download -> extract -> convert -> evaluate -> aggregate, then a rerun that does nothing."""
    archive = tmp_path / "mirror/bigbench-1.0.0.tar.gz"
    archive.parent.mkdir()
    config = yaml.safe_load((REPO / "tests/configs/bigbench.yaml").read_text())
    config["bigbench"] = {"archive_url": archive.as_uri(), "archive_sha256": pack_archive(archive)}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "study.yaml"))
    downloads = list((tmp_path / "results/downloads").iterdir())
    assert [p.name for p in downloads] == [f"bigbench-1.0.0-{config['bigbench']['archive_sha256'][:8]}.tar.gz"]

    samples = pd.read_parquet(tmp_path / "results/bigbench_fixture/latest/samples.parquet")
    assert set(samples.task) == set(config["tasks"])
    choice = samples[samples.task.isin(["parsinlu_qa", "truthful_qa"])]
    assert choice.choice_logprobs.map(len).eq(choice.choices.map(len)).all() and choice.mc_grade.notna().all()
    ipa = samples[samples.task == "international_phonetic_alphabet_transliterate"]
    assert ipa.bleu.between(0, 100).all() and (ipa.metric == "bleu").all()
    words = samples[samples.task == "word_unscrambling"]
    assert words.exact_match.isin([0.0, 1.0]).all() and (words.metric == "exact_match").all()
    assert (samples.target_ce_per_token > 0).all()

    archive.unlink()  # a second run needs nothing from the mirror
    rerun = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "study.yaml"))
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
