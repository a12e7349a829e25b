"""Evaluate one cell group (a model run's checkpoints x one task x one strategy) through lm-eval's Python API.

The strategy's lm-eval views (see `emergence.tasks.views`) run in one `simple_evaluate` call on the same
documents and few-shot exemplars: the generative view gives `generation`/`answer`/`exact_match`, the likelihood
view `target_logprob`/`is_greedy`; a P(True) strategy's single judgement view gives `p_true`/`label_true`. One row
per checkpoint x document is written to a Parquet file; every derived metric can be recomputed from its raw
columns.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from emergence.io import atomic_path, read_json
from emergence.strategies import Strategy
from emergence.tasks.views import write_views

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = [
    "model", "task", "strategy", "doc_id", "prompt", "target", "completion", "generation", "answer", "exact_match",
    "target_logprob", "target_tokens", "is_greedy", "random_baseline", "p_true", "label_true",
]


def pick_device() -> tuple[str, str]:
    """CUDA with bf16 when a GPU is present, else CPU with float32."""
    import torch

    return ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")


def checkpoint_dirs(model_root: str | Path) -> list[Path]:
    """The model directories under a run directory (each holds `model.json`), in training order."""
    root = Path(model_root)
    if (root / "model.json").exists():
        return [root]
    dirs = [d for d in root.iterdir() if (d / "model.json").exists()]
    if not dirs:
        raise FileNotFoundError(f"no model directory (with model.json) under {root}")
    return sorted(dirs, key=lambda d: read_json(d / "model.json").get("checkpoint_step") or 0)


def evaluate_cells(
    model_root: str | Path,
    task_dir: str | Path,
    strategy: Strategy,
    out_path: str | Path,
    *,
    batch_size: int = 64,
    seed: int = 1234,
    threads: int = 1,
    limit: int | None = None,
) -> pd.DataFrame:
    """Run every checkpoint under `model_root` on the task in `task_dir` with `strategy`; write Parquet."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(threads)
    device, dtype = pick_device()
    task_meta = read_json(Path(task_dir) / "task.json")
    frames = []
    # The strategy's views live as long as the job: a failed job leaves no stray folder in results/cells.
    with tempfile.TemporaryDirectory(prefix="views-", dir=Path(out_path).parent) as views_dir:
        views = write_views(task_dir, strategy, views_dir)
        task_manager = TaskManager(include_path=views_dir, include_defaults=False)
        for model_dir in checkpoint_dirs(model_root):
            model_meta = read_json(model_dir / "model.json")
            lm = HFLM(pretrained=str(model_dir), tokenizer=str(model_dir), device=device, dtype=dtype,
                      batch_size=batch_size)
            results = simple_evaluate(
                model=lm,
                tasks=list(views.values()),
                task_manager=task_manager,
                num_fewshot=strategy.num_fewshot,
                bootstrap_iters=0,
                log_samples=True,
                limit=limit,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                verbosity="WARNING",
            )
            if "mc" in views:
                frame = p_true_frame(results["samples"][views["mc"]], lm)
            else:
                frame = samples_frame(results["samples"], views, lm)
                frame["random_baseline"] = task_meta["random_baseline"]
                frame["p_true"] = frame["label_true"] = float("nan")
            frame.insert(0, "model", model_meta["model_id"])
            frame.insert(1, "task", task_meta["task"])
            frame.insert(2, "strategy", strategy.name)
            frames.append(frame[SAMPLE_COLUMNS])
            log.info("%s %s %s: exact match %.3f, mean target log-prob %.3f over %d docs", model_meta["model_id"],
                     task_meta["task"], strategy.name, frame.exact_match.mean(), frame.target_logprob.mean(),
                     len(frame))
            del lm
    table = pd.concat(frames, ignore_index=True)
    with atomic_path(out_path) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def samples_frame(samples: dict, views: dict, lm) -> pd.DataFrame:
    """Join the two views' logged samples on doc_id into one row per document.

    `target` is the gold answer, `completion` the gold continuation scored by likelihood (the answer, or a trace
    ending in it), `generation` the raw greedy output and `answer` what the strategy's filters extracted from it.
    `target_tokens` (tokens of the completion) comes from lm-eval's own context/continuation split
    (`HFLM._encode_pair`), which moves trailing context whitespace into the continuation; lm-eval does not record
    the count itself.
    """
    gen = {s["doc_id"]: s for s in samples[views["gen"]]}
    ll = {s["doc_id"]: s for s in samples[views["ll"]]}
    if gen.keys() != ll.keys():
        raise RuntimeError("the generative and likelihood views saw different documents")
    rows = []
    for doc_id in sorted(gen):
        g, l = gen[doc_id], ll[doc_id]
        context, continuation = l["arguments"][0]
        if g["arguments"][0][0] != context:
            raise RuntimeError(f"doc {doc_id}: the two views built different prompts (few-shot sampling differs)")
        logprob, is_greedy = l["resps"][0][0]
        _, continuation_ids = lm._encode_pair(context, continuation)
        rows.append({
            "doc_id": int(doc_id),
            "prompt": context,
            "target": g["target"],
            "completion": continuation.strip(),
            "generation": g["resps"][0][0],
            "answer": g["filtered_resps"][0],
            "exact_match": float(g["exact_match"]),
            "target_logprob": float(logprob),
            "target_tokens": len(continuation_ids),
            "is_greedy": bool(is_greedy),
        })
    return pd.DataFrame(rows)


def p_true_frame(samples: list[dict], lm) -> pd.DataFrame:
    """One row per document of a P(True) view: the judgement as an answer (`exact_match` is its accuracy), the
    gold choice's log-likelihood, and P(True) normalised over the two choices with the truth of the proposal."""
    rows = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        (context, _), choices = s["arguments"][0], [arg[1] for arg in s["arguments"]]
        logprobs = [resp[0][0] for resp in s["resps"]]
        gold = int(s["target"])
        p_true = float(softmax(logprobs)[0])  # stable where both log-likelihoods are very negative
        _, gold_ids = lm._encode_pair(context, choices[gold])
        rows.append({
            "doc_id": int(s["doc_id"]),
            "prompt": context,
            "target": choices[gold].strip(),
            "completion": choices[gold].strip(),
            "generation": choices[int(np.argmax(logprobs))],
            "answer": choices[int(np.argmax(logprobs))].strip(),
            "exact_match": float(s["acc"]),
            "target_logprob": float(logprobs[gold]),
            "target_tokens": len(gold_ids),
            "is_greedy": bool(s["resps"][gold][0][1]),
            "random_baseline": 1 / len(choices),
            "p_true": p_true,
            "label_true": float(gold == 0),
        })
    return pd.DataFrame(rows)
