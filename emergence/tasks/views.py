"""lm-eval task YAMLs for one task under one prompting strategy: the generative view (scored by exact match on
the extracted answer) and the likelihood view (log-probability of the gold completion), over the same documents
with identical prompts and few-shot exemplars."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import yaml

from emergence.io import atomic_path, read_json
from emergence.ladder import data
from emergence.strategies import Strategy

VIEWS = {"gen": "generate_until", "ll": "loglikelihood"}
P_TRUE_QUERY = "Q: {question}\nProposed answer: {proposed}\nIs the proposed answer true?\nA:"
P_TRUE_CHOICES = ["True", "False"]


def jinja(fmt: str) -> str:
    """`"Q: {question}"` -> `"Q: {{question}}"`: one prompt format serves training and lm-eval."""
    return fmt.replace("{", "{{").replace("}", "}}")


def view_task_name(task: str, view: str) -> str:
    return f"{task}_{view}"


def _answer_views(common: dict, strategy: Strategy) -> dict:
    """gen: exemplars show the strategy's completion, the generation's extracted answer is scored against the
    answer; ll: log-likelihood of the gold completion after the same prompt."""
    completion = jinja(data.format_answer("{" + strategy.completion + "}"))
    answer_filters = [{"function": "remove_whitespace"}, {"function": "take_first"}]
    if strategy.answer_pattern:
        answer_filters.insert(0, {"function": "regex", "regex_pattern": strategy.answer_pattern, "fallback": ""})
    return {
        "gen": {
            **common,
            "doc_to_target": "{{answer}}",
            "target_delimiter": " ",
            "fewshot_config": {"sampler": "default", "doc_to_target": completion.lstrip()},
            "generation_kwargs": {"until": [data.STOP], "do_sample": False, "max_gen_toks": strategy.max_gen_toks},
            "filter_list": [{"name": "answer", "filter": answer_filters}],
        },
        "ll": {**common, "doc_to_target": completion, "target_delimiter": ""},
    }


def _p_true_views(common: dict) -> dict:
    """mc: the question with a proposed answer, judged True or False (exemplars show the right judgement)."""
    return {"mc": {**common, "doc_to_text": jinja(P_TRUE_QUERY), "doc_to_choice": P_TRUE_CHOICES,
                   "doc_to_target": "{{0 if proposed_correct else 1}}", "target_delimiter": " "}}


def write_views(task_dir: str | Path, strategy: Strategy, out_dir: str | Path) -> dict:
    """Write `<task>_gen.yaml` and `<task>_ll.yaml` for `strategy` into `out_dir` (for a P(True) strategy, one
    `<task>_mc.yaml` judgement view instead); return {view: task name}."""
    task_dir, out_dir = Path(task_dir).resolve(), Path(out_dir)
    meta = read_json(task_dir / "task.json")
    task = meta["task"]
    needed = ["proposed", "proposed_correct"] if strategy.kind == "p_true" else [strategy.completion]
    if missing := [f for f in needed if f not in meta["fields"]]:
        raise ValueError(f"strategy {strategy.name!r} needs the field {missing[0]!r}, which task {task!r} "
                         f"does not have (fields: {', '.join(meta['fields'])})")
    common = {
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(task_dir / f"{split}.jsonl") for split in ("test", "fewshot")}},
        "test_split": "test",
        "fewshot_split": "fewshot",
        "doc_to_text": jinja(data.QUERY_FORMAT),
        "fewshot_delimiter": data.EXAMPLE_SEPARATOR,
        **({"description": strategy.instruction + data.EXAMPLE_SEPARATOR} if strategy.instruction else {}),
    }
    specs = _p_true_views(common) if strategy.kind == "p_true" else _answer_views(common, strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for view, spec in specs.items():
        output_type = VIEWS.get(view, "multiple_choice")
        template = resources.files("emergence.tasks") / "templates" / f"{output_type}.yaml"
        shutil.copyfile(template, out_dir / f"_{output_type}.yaml")
        names[view] = view_task_name(task, view)
        spec = {"include": f"_{output_type}.yaml", "task": names[view], **spec}
        with atomic_path(out_dir / f"{names[view]}.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return names
