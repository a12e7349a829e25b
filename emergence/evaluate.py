"""Evaluate cells (a model run's checkpoints x tasks x strategies) through lm-eval's Python API.

The strategy's lm-eval views (see `emergence.tasks.views`) run in one lm-eval `evaluate` call on the same
documents and few-shot exemplars: the generative view gives `generation`/`answer`/`exact_match`/`bleu`, the
likelihood view `target_logprob`/`is_greedy`; a multiple-choice view the log-likelihood of every choice
(`choice_logprobs`, `mc_grade`, `p_correct`, `brier_choices`), and under a P(True) strategy `p_true`/`label_true`.
lm-eval's own tasks run as they are. One row per checkpoint x document is written to a Parquet file; every
derived metric can be recomputed from its raw columns.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lm_eval.utils
import numpy as np
import pandas as pd
import torch
from lm_eval import evaluate
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager
from scipy.special import softmax

from emergence import metrics
from emergence.backend import FastLM
from emergence.io import atomic_path, read_json
from emergence.models.modeldir import checkpoint_dirs, read_metadata
from emergence.strategies import Strategy
from emergence.tasks.lm_eval_tasks import lm_eval_manager
from emergence.tasks.views import validate_task_dir, write_views

log = logging.getLogger(__name__)


@functools.cache
def _compiled_template(source: str):
    return lm_eval.utils.env.from_string(source)


def _apply_template(template: str, doc: dict) -> str:
    """lm-eval's `apply_template`, compiling each Jinja template once: lm-eval compiles it anew for every document
    and exemplar (about 4 ms each), which was a quarter of a ladder evaluation job."""
    return _compiled_template(template).render(**doc)


lm_eval.utils.apply_template = _apply_template  # lm-eval's tasks call it through the module

SAMPLE_COLUMNS = [
    "model", "task", "strategy", "subtask", "doc_id", "prompt", "target", "completion", "generation", "answer",
    "exact_match", "mc_grade", "bleu", "target_logprob", "target_tokens", "is_greedy", "answer_logprob",
    "answer_tokens", "is_greedy_stop", "prompt_truncated", "choices", "choice_logprobs", "p_correct", "brier_choices",
    "random_baseline", "p_true", "label_true",
]


def pick_device(device: str = "auto") -> tuple[str, str]:
    """`auto`: CUDA with bf16 when a GPU is present, else CPU with float32; `cpu`/`cuda` force one."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("evaluation.device is cuda but no CUDA device is visible; use auto or cpu")
    return (device, "bfloat16" if device == "cuda" else "float32")


@dataclass(frozen=True)
class Cell:
    """One task under one strategy, written to `out_path` for every checkpoint of a run."""

    task_dir: Path
    strategy: Strategy
    out_path: Path


def evaluate_cells(model_root: str | Path, task_dir: str | Path, strategy: Strategy, out_path: str | Path,
                   **settings) -> pd.DataFrame:
    """Run every checkpoint under `model_root` on the task in `task_dir` with `strategy`; write Parquet."""
    return evaluate_run(model_root, [Cell(Path(task_dir), strategy, Path(out_path))], **settings)[0]


def evaluate_run(
    model_root: str | Path,
    cells: list[Cell],
    *,
    batch_size: int | str = 64,
    backend: str = "emergence",
    device: str = "auto",
    seed: int = 1234,
    threads: int = 1,
    limit: int | None = None,
) -> list[pd.DataFrame]:
    """Every checkpoint under `model_root` on every cell, loading each checkpoint once (for large models the load
    costs more than a cell); each cell's rows are written to its own Parquet file when all checkpoints are done."""
    torch.set_num_threads(threads)
    frames = {cell: [] for cell in cells}
    with contextlib.ExitStack() as stack:
        prepared = {}
        for cell in cells:
            validate_task_dir(cell.task_dir, cell.strategy)  # bad data stops here, named by file and line
            task_meta = read_json(cell.task_dir / "task.json")
            if task_meta["kind"] == "lm_eval":  # lm-eval's own task: its prompts, k-shot only
                prepared[cell] = (task_meta, None, lm_eval_manager(tuple(task_meta["lm_eval_task_dirs"])),
                                  [task_meta["task"]])
                continue
            # The views live as long as the job: a failed job leaves no stray folder beside its outputs.
            cell.out_path.parent.mkdir(parents=True, exist_ok=True)
            views_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="views-", dir=cell.out_path.parent))
            views = write_views(cell.task_dir, cell.strategy, views_dir)
            prepared[cell] = (task_meta, views, TaskManager(include_path=views_dir, include_defaults=False),
                              list(views.values()))
        for model_dir in checkpoint_dirs(model_root):
            model_meta = read_metadata(model_dir)
            lm = load_lm(model_dir, batch_size, backend, device)
            for cell, (task_meta, views, task_manager, task_names) in prepared.items():
                strategy = cell.strategy
                results = run_lm_eval(lm, task_manager, task_names, strategy.num_fewshot, limit=limit, seed=seed)
                p_true = strategy.kind == "p_true"
                frame = cell_frame(results, views, lm, p_true=p_true)
                if task_meta["random_baseline"] is not None and not p_true:  # the task's chance level
                    frame["random_baseline"] = task_meta["random_baseline"]
                frame.insert(0, "model", model_meta["model_id"])
                frame.insert(1, "task", task_meta["task"])
                frame.insert(2, "strategy", strategy.name)
                frames[cell].append(frame.reindex(columns=SAMPLE_COLUMNS))
                log.info("%s %s %s: exact match %.3f, mean target log-prob %.3f over %d docs",
                         model_meta["model_id"], task_meta["task"], strategy.name, frame.exact_match.mean(),
                         frame.target_logprob.mean(), len(frame))
            del lm
    tables = []
    for cell, parts in frames.items():
        tables.append(pd.concat(parts, ignore_index=True))
        with atomic_path(cell.out_path) as tmp:
            tables[-1].to_parquet(tmp, index=False)
    return tables


def run_lm_eval(lm, task_manager: TaskManager, task_names: list[str], num_fewshot: int, *, limit: int | None,
                seed: int) -> dict:
    """lm-eval's `simple_evaluate` for a ready model: the same seeds, task loading, k-shot and exemplar seed, then
    lm-eval's `evaluate`, without what `simple_evaluate` adds to its results afterwards (torch's `collect_env`
    runs pip and other subprocesses on every call, about 3 s; the manifest records the packages once)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    loaded = task_manager.load(task_names)
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") != 0:  # a task fixed at 0-shot stays so, as in `simple_evaluate`
            task.set_config(key="num_fewshot", value=num_fewshot)
        task.set_fewshot_seed(seed=seed)
    return evaluate(lm=lm, task_dict=loaded, limit=limit, bootstrap_iters=0, log_samples=True, verbosity="WARNING")


def load_lm(model_dir: Path, batch_size: int | str, backend: str = "emergence", device: str = "auto"):
    """The checkpoint as an lm-eval model on `device` (see `pick_device`).

    `emergence` is this project's backend (same log-likelihoods and generations as HFLM, less overhead);
    `hf` is lm-eval's stock HFLM, kept for comparison."""
    device, dtype = pick_device(device)
    if backend == "emergence":
        return FastLM(pretrained=str(model_dir), device=device, dtype=dtype, batch_size=batch_size)
    from lm_eval.models.huggingface import HFLM  # imported here: only the stock backend pays for it

    return HFLM(pretrained=str(model_dir), tokenizer=str(model_dir), device=device, dtype=dtype,
                batch_size=batch_size)


def cell_frame(results: dict, views: dict | None, lm, *, p_true: bool = False) -> pd.DataFrame:
    """lm-eval's logged samples -> one row per document (`views` None: an lm-eval task or group, whose member
    tasks become `subtask`s)."""
    samples = results["samples"]
    if views is None:
        frames = []
        for name, logged in samples.items():
            output_type = results["configs"][name]["output_type"]
            if output_type == "multiple_choice":
                frame = choice_frame(logged, lm)
            elif output_type == "generate_until":
                frame = answer_frame(logged, None, lm)
            else:
                raise ValueError(f"lm-eval task {name!r} has output type {output_type!r}; this pipeline scores "
                                 f"multiple_choice and generate_until tasks")
            frame.insert(0, "subtask", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)
    if "mc" in views:
        frame = choice_frame(samples[views["mc"]], lm, p_true=p_true)
    else:
        frame = answer_frame(samples[views["gen"]], samples[views["ll"]], lm)
    frame.insert(0, "subtask", "")
    return frame


def answer_frame(gen_samples: list[dict], ll_samples: list[dict] | None, lm) -> pd.DataFrame:
    """Join the generative and likelihood views' samples on doc_id into one row per document.

    `target` is the gold answer, `completion` the gold continuation scored by likelihood (the answer, or a trace
    ending in it), `generation` the raw greedy output and `answer` what the filters extracted from it; exact
    match and BLEU compare the answer with every valid target of the document. `target_tokens` (tokens of the
    completion) comes from lm-eval's own context/continuation split (`TemplateLM._encode_pair`), which moves trailing
    context whitespace into the continuation; lm-eval does not record the count itself. Without a likelihood
    view (lm-eval's own generative tasks) the likelihood columns are empty.

    The greedy side of the p^L comparison (`answer_stop_requests`): `answer_logprob`/`answer_tokens` score the
    final answer and the generation's stop string, after the gold trace where the completion is one, and
    `is_greedy_stop` says whether every one of those tokens is the argmax: the greedy answer is exactly right
    iff it is (up to the answer filter). `prompt_truncated`: the prompt is longer than the generation's context
    window (max_length less the request's max_gen_toks), so the backend dropped its start.
    """
    gen = {s["doc_id"]: s for s in gen_samples}
    ll = {s["doc_id"]: s for s in ll_samples} if ll_samples is not None else None
    if ll is not None and gen.keys() != ll.keys():
        raise RuntimeError("the generative and likelihood views saw different documents")
    rows = []
    for doc_id in sorted(gen):
        g = gen[doc_id]
        context = g["arguments"][0][0]
        # BIG-bench targets may start with the space that follows their prompt; the extracted answer does not
        targets = [t.strip() for t in g["doc"].get("answers") or [str(g["target"])]]
        answer = g["filtered_resps"][0].strip()
        row = {"doc_id": int(doc_id), "prompt": context, "target": str(g["target"]).strip(),
               "completion": str(g["target"]).strip(),
               "generation": g["resps"][0][0], "answer": answer, "exact_match": float(answer in targets),
               "bleu": metrics.sentence_bleu(answer, targets), "target_logprob": np.nan, "target_tokens": np.nan,
               "is_greedy": None}
        if ll is not None:
            scored = ll[doc_id]
            ll_context, continuation = scored["arguments"][0]
            if ll_context != context:
                raise RuntimeError(f"doc {doc_id}: the two views built different prompts (few-shot sampling differs)")
            logprob, is_greedy = scored["resps"][0][0]
            context_enc, continuation_enc = lm._encode_pair(context, continuation)
            row.update(completion=continuation.strip(), target_logprob=float(logprob), is_greedy=bool(is_greedy),
                       target_tokens=len(continuation_enc),
                       prompt_truncated=len(context_enc) > generation_window(lm, g))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if ll is not None:
        requests = [answer_stop_request(*ll[doc_id]["arguments"][0], target, stop_string(gen[doc_id]), doc_id)
                    for doc_id, target in zip(sorted(gen), frame.target)]
        scored = lm.loglikelihood(requests)
        frame["answer_logprob"] = [float(logprob) for logprob, _ in scored]
        frame["is_greedy_stop"] = [bool(greedy) for _, greedy in scored]
        frame["answer_tokens"] = [len(lm._encode_pair(*r.args)[1]) for r in requests]
    return frame


def generation_window(lm, gen_sample: dict) -> int:
    """Prompt tokens the backend keeps for a generation (it drops the start of longer prompts): the context
    window less the request's own max_gen_toks."""
    return lm.max_length - (gen_sample["arguments"][0][1].get("max_gen_toks") or lm.max_gen_toks)


def stop_string(gen_sample: dict) -> str:
    """The first stop string of a generative request (what ends a greedy answer); empty if it has none."""
    return (gen_sample["arguments"][0][1].get("until") or [""])[0]


def answer_stop_request(context: str, continuation: str, target: str, stop: str, doc_id: int) -> Instance:
    """The log-likelihood request of the final answer followed by the stop string: after the prompt for a plain
    completion; after the prompt and the gold trace where the completion is a trace (scratchpad, chain of thought)
    whose last mention of the answer is not at its start (answer-only CE, as exact match scores the answer only)."""
    body = continuation.rstrip()
    split = body.rfind(target) if target else -1
    if split > 0 and body[:split].strip():
        context, body = context + body[:split], body[split:]
    return Instance(request_type="loglikelihood", doc={}, arguments=(context, body + stop), idx=int(doc_id))


def choice_frame(samples: list[dict], lm, *, p_true: bool = False) -> pd.DataFrame:
    """One row per document of a multiple-choice view: the log-likelihood of every choice, the argmax choice
    as the answer (`exact_match`: it is a best choice; `mc_grade`: its BIG-bench target score), the gold
    choice's log-likelihood and tokens (the continuous metric), and the choice distribution normalised over the
    choices (`p_correct`, multi-class Brier). A P(True) view adds P(True) and the truth of the proposal."""
    rows = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        context, choices = s["arguments"][0][0], [arg[1] for arg in s["arguments"]]
        logprobs = np.array([resp[0][0] for resp in s["resps"]])
        gold = int(s["target"])
        scores = np.array(s["doc"].get("choice_scores") or np.eye(len(choices))[gold])
        probs = softmax(logprobs)  # stable where every log-likelihood is very negative
        best = int(np.argmax(logprobs))
        context_enc, gold_enc = lm._encode_pair(context, choices[gold])
        rows.append({
            "doc_id": int(s["doc_id"]),
            "prompt": context,
            "target": choices[gold].strip(),
            "completion": choices[gold].strip(),
            "generation": choices[best],
            "answer": choices[best].strip(),
            "exact_match": float(scores[best] == scores.max()),
            "mc_grade": float(scores[best]),
            "target_logprob": float(logprobs[gold]),
            "target_tokens": len(gold_enc),
            "prompt_truncated": len(context_enc) + len(gold_enc) > lm.max_length + 1,  # scored window dropped its start
            "is_greedy": bool(s["resps"][gold][0][1]),
            "choices": [c.strip() for c in choices],
            "choice_logprobs": logprobs.tolist(),
            "p_correct": float(probs[gold]),
            "brier_choices": metrics.multiclass_brier(probs, gold),
            "random_baseline": float(scores.mean()),  # a uniform guess's expected grade (1/choices if one-hot)
            **({"p_true": float(probs[0]), "label_true": float(gold == 0)} if p_true else {}),
        })
    return pd.DataFrame(rows)
