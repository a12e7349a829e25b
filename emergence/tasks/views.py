"""A task on disk (test/fewshot JSONL + task.json) and its lm-eval YAML views under one prompting strategy.

Every task maker (generated arithmetic, BIG-bench) writes documents with `question` and `answer` (plus
`answers`, every valid target; and `choices`/`choice_scores`/`gold` for multiple choice) and a `prompt` block in
task.json saying how the task lays out a prompt: `query` (format of a document's prompt), `delimiter` (between
prompt and answer), `separator` (between few-shot exemplars), `prefix` (task description), `stop`,
`answer_regex`, `max_gen_toks`. Views over the same documents share prompts and exemplars:
- gen: greedy generation, the answer extracted by the strategy's or the task's regex (exact match, BLEU);
- ll: log-likelihood of the gold completion (the continuous side of the mirage test);
- mc: log-likelihood of every choice (multiple-choice tasks and P(True) judgements).
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import yaml

from emergence.io import DataError, atomic_path, read_json, read_jsonl, sha256_file, write_json
from emergence.strategies import Strategy, load_strategy
from emergence.tasks.lm_eval_tasks import lm_eval_data_files

OUTPUT_TYPES = {"gen": "generate_until", "ll": "loglikelihood", "mc": "multiple_choice"}
P_TRUE_QUERY = "Q: {question}\nProposed answer: {proposed}\nIs the proposed answer true?\nA:"
P_TRUE_CHOICES = ["True", "False"]


def jinja(fmt: str) -> str:
    """`"Q: {question}"` -> `"Q: {{question}}"`: one prompt format serves training and lm-eval."""
    return fmt.replace("{", "{{").replace("}", "}}")


def view_task_name(task: str, view: str) -> str:
    """lm-eval task name of a view (task names may hold '.', as BIG-bench subtasks do)."""
    return re.sub(r"\W", "_", f"{task}_{view}")


def write_task_files(out_dir: str | Path, splits: dict[str, list[dict]], meta: dict) -> dict:
    """Write `<split>.jsonl` for each split, task.json (meta + fields + checksums) and the plain 0-shot views,
    so lm-eval can run the task folder directly. Returns the full metadata."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        with atomic_path(out_dir / f"{split}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records),
                           encoding="utf-8")
    meta = {**meta, "fields": sorted({k for records in splits.values() for r in records for k in r}),
            "checksums": {f"{split}.jsonl": sha256_file(out_dir / f"{split}.jsonl") for split in splits}}
    write_json(out_dir / "task.json", meta)
    write_views(out_dir, load_strategy("0shot"), out_dir)
    return meta


def _answer_views(common: dict, strategy: Strategy, prompt: dict) -> dict:
    """gen: exemplars show the strategy's completion, the generation's extracted answer is scored against the
    answers; ll: log-likelihood of the gold completion after the same prompt (lm-eval adds no delimiter to a
    loglikelihood continuation, so the view's target carries it).

    Targets name document fields where they can: lm-eval evaluates a rendered template that looks like a
    number or a list as a Python literal (Persian digits then fail, "[1, 2]" becomes a list)."""
    completion = strategy.completion
    delimited = jinja(prompt["delimiter"] + "{" + completion + "}") if prompt["delimiter"] else completion
    answer_filters = [{"function": "remove_whitespace"}, {"function": "take_first"}]
    if pattern := strategy.answer_pattern or prompt["answer_regex"]:
        answer_filters.insert(0, {"function": "regex", "regex_pattern": pattern, "fallback": ""})
    max_gen_toks = max(strategy.max_gen_toks, prompt.get("max_gen_toks") or 0)
    return {
        "gen": {
            **common,
            "doc_to_target": "answer",
            "target_delimiter": prompt["delimiter"],
            "fewshot_config": {"sampler": "default", "doc_to_target": completion},
            "generation_kwargs": {"until": prompt["stop"], "do_sample": False, "max_gen_toks": max_gen_toks},
            "filter_list": [{"name": "answer", "filter": answer_filters}],
        },
        "ll": {**common, "doc_to_target": delimited, "target_delimiter": ""},
    }


def _choice_view(common: dict, prompt: dict) -> dict:
    """mc: the log-likelihood of every choice after the prompt (exemplars show the gold choice)."""
    return {"mc": {**common, "doc_to_choice": "choices", "doc_to_target": "gold",
                   "target_delimiter": prompt["delimiter"],
                   "fewshot_config": {"sampler": "default", "doc_to_target": "answer"}}}


def _p_true_view(common: dict) -> dict:
    """mc: the question with a proposed answer, judged True or False (exemplars show the right judgement)."""
    return {"mc": {**common, "doc_to_text": jinja(P_TRUE_QUERY), "doc_to_choice": P_TRUE_CHOICES,
                   "doc_to_target": "{{0 if proposed_correct else 1}}", "target_delimiter": " "}}


def strategy_fields(strategy: Strategy) -> list[str]:
    """The document fields a strategy builds its prompts from."""
    return ["proposed", "proposed_correct"] if strategy.kind == "p_true" else [strategy.completion]


def validate_task_dir(task_dir: str | Path, strategy: Strategy) -> None:
    """Check a task's data before lm-eval reads it: a malformed, non-UTF-8 or empty file or a record without its
    target stops here with the file and line (lm-eval and `datasets` fail deep inside, without the file, or
    score a record without a target as if it had one). A task folder the pipeline wrote is rebuilt by deleting
    it; an lm-eval task's own JSON Lines files are the user's to fix."""
    task_dir = Path(task_dir)
    try:
        meta = read_json(task_dir / "task.json")
        if meta["kind"] != "lm_eval":
            choices = ["choices", "gold"] if meta.get("multiple_choice") else []
            required = list(dict.fromkeys(["question", "answer", *choices, *strategy_fields(strategy)]))
            read_jsonl(task_dir / "test.jsonl", required)
            pool = read_jsonl(task_dir / "fewshot.jsonl", required, allow_empty=True)
            if len(pool) < strategy.num_fewshot:
                raise DataError(f"{task_dir / 'fewshot.jsonl'} holds {len(pool)} exemplars, but strategy "
                                f"{strategy.name!r} needs {strategy.num_fewshot}.")
    except DataError as err:
        raise DataError(f"{err} This task folder is written by the pipeline: delete {task_dir} and rerun to "
                        f"write it again.") from None
    if meta["kind"] == "lm_eval":
        for path, target in lm_eval_data_files(meta["task"], meta["lm_eval_task_dirs"]):
            fields = {field for record in read_jsonl(path) for field in record}
            if isinstance(target, str) and target in fields:  # a field name (lm-eval's rule), not a template
                read_jsonl(path, required=[target])


def write_views(task_dir: str | Path, strategy: Strategy, out_dir: str | Path) -> dict:
    """Write the views of the task in `task_dir` under `strategy` into `out_dir`; return {view: task name}.

    Answer tasks get `gen` and `ll`; multiple-choice tasks and P(True) strategies one `mc` view.
    """
    task_dir, out_dir = Path(task_dir).resolve(), Path(out_dir)
    meta = read_json(task_dir / "task.json")
    task, prompt = meta["task"], meta["prompt"]
    if missing := [f for f in strategy_fields(strategy) if f not in meta["fields"]]:
        raise ValueError(f"strategy {strategy.name!r} needs the field {missing[0]!r}, which task {task!r} "
                         f"does not have (fields: {', '.join(meta['fields'])})")
    description = "".join(part + sep for part, sep in ((strategy.instruction, prompt["separator"]),
                                                        (prompt["prefix"], "")) if part)
    common = {
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(task_dir / f"{split}.jsonl") for split in ("test", "fewshot")}},
        "test_split": "test",
        "fewshot_split": "fewshot",
        "doc_to_text": jinja(prompt["query"]),
        "fewshot_delimiter": prompt["separator"],
        **({"description": description} if description else {}),
    }
    if strategy.kind == "p_true":
        specs = _p_true_view(common)
    elif meta.get("multiple_choice"):
        specs = _choice_view(common, prompt)
    else:
        specs = _answer_views(common, strategy, prompt)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for view, spec in specs.items():
        output_type = OUTPUT_TYPES[view]
        template = resources.files("emergence.tasks") / "templates" / f"{output_type}.yaml"
        shutil.copyfile(template, out_dir / f"_{output_type}.yaml")
        names[view] = view_task_name(task, view)
        spec = {"include": f"_{output_type}.yaml", "task": names[view], **spec}
        with atomic_path(out_dir / f"{names[view]}.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return names
