"""Per-sample Parquet files -> `samples.parquet` (joined with model metadata) and `cells.parquet` (one row per
model x task x strategy with bootstrap intervals and the continuous metrics beside exact match)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emergence import metrics
from emergence.io import atomic_path, read_json
from emergence.models.modeldir import SCALE_KEYS, checkpoint_dirs, read_metadata

MODEL_COLUMNS = list(SCALE_KEYS)


def model_table(model_roots: list[str | Path]) -> pd.DataFrame:
    """One row per model id (every checkpoint of every run) with the metadata the analysis plots against."""
    rows = []
    for root in model_roots:
        for model_dir in checkpoint_dirs(root):
            meta = read_metadata(model_dir)
            rows.append({"model": meta["model_id"], "model_dir": str(model_dir),
                         # what the model is outside this study (a hub repository, a local folder): matched
                         # against published results of the same model
                         "source_model": meta.get("repo_id") or meta.get("path"),
                         **{c: meta.get(c) for c in MODEL_COLUMNS}})
    return pd.DataFrame(rows)


def token_edit_distances(samples: pd.DataFrame, model_dirs: dict[str, str]) -> np.ndarray:
    """Edit distance between the extracted and the gold answer's tokens, with each model's own tokenizer."""
    from transformers import AutoTokenizer  # heavy (seconds); the table rules import this module without it

    out = np.zeros(len(samples), dtype=np.int64)
    for model, index in samples.groupby("model").groups.items():
        tokenizer = AutoTokenizer.from_pretrained(model_dirs[model])
        rows = samples.loc[index]
        out[samples.index.get_indexer(index)] = [
            metrics.edit_distance(tokenizer.encode(answer, add_special_tokens=False),
                                  tokenizer.encode(target, add_special_tokens=False))
            for answer, target in zip(rows.answer, rows.target)
        ]
    return out


def task_table(task_dirs: list[str | Path]) -> pd.DataFrame:
    """Per task, its paper metric (the chance level comes with each sample: it depends on the strategy)."""
    return pd.DataFrame([{"task": meta["task"], "metric": meta["metric"]}
                         for meta in (read_json(Path(d) / "task.json") for d in task_dirs)])


# Per-sample metrics summarised per cell with bootstrap intervals, where the cell's task defines them: exact match,
# the likelihood metrics every cell has, and those of BIG-bench scoring (multiple-choice grade and the choice
# distribution for multiple choice, BLEU for free-form answers).
CELL_METRICS = ("exact_match", "target_ce_per_token", "token_edit_distance", "mc_grade", "bleu", "p_correct",
                "brier_choices")


def summarize_cell(group: pd.DataFrame, *, n_resamples: int, seed: int) -> dict:
    """The per-cell numbers: each available per-sample metric with its 95% interval (exact binomial for 0/1
    outcomes, bootstrap otherwise), the two p^L predictions, per-metric chance levels and calibration of P(True)."""
    row = {"n": len(group)}
    for name in CELL_METRICS:
        values = group[name].to_numpy(dtype=float)
        low, high = (metrics.sample_ci(values, n_resamples=n_resamples, seed=seed) if np.isfinite(values).all()
                     else (np.nan, np.nan))
        row.update({name: values.mean(), f"{name}_ci_low": low, f"{name}_ci_high": high})
    judged = group.p_true.notna().all()
    row.update({
        "brier": metrics.brier(group.p_true, group.label_true) if judged else np.nan,
        "ece": metrics.expected_calibration_error(group.p_true, group.label_true) if judged else np.nan,
        "random_baseline": group.random_baseline.mean(),
        "target_ce_total": group.target_ce.mean(),
        "target_tokens_mean": group.target_tokens.mean(),
        "p_all_tokens": metrics.p_all_tokens(group.target_logprob).mean(),
        "is_greedy": group.is_greedy.astype(float).mean(),
        **p_l_columns(group),
        **chance_columns(group),
    })
    return row


def p_l_columns(group: pd.DataFrame) -> dict:
    """The p^L prediction of exact match under each decoding rule. `pl_sampling`: mean probability of sampling
    every gold completion token (temperature 1, no stop). `pl_greedy`: share of documents whose answer and stop
    tokens are all the argmax (the greedy answer is then exactly right), with its exact interval;
    `answer_ce_per_token` (over `answer_tokens_mean` tokens): CE of the answer and stop only (after the gold
    trace for scratchpad strategies)."""
    out = {"pl_sampling": metrics.p_all_tokens(group.target_logprob).mean(), "pl_greedy": np.nan,
           "pl_greedy_ci_low": np.nan, "pl_greedy_ci_high": np.nan, "answer_ce_per_token": np.nan,
           "answer_tokens_mean": np.nan,
           "prompt_truncated_share": np.nan}
    if "is_greedy_stop" in group and group.is_greedy_stop.notna().all():
        greedy = group.is_greedy_stop.astype(float)
        low, high = metrics.clopper_pearson(greedy.sum(), len(greedy))
        out.update(pl_greedy=greedy.mean(), pl_greedy_ci_low=low, pl_greedy_ci_high=high,
                   answer_ce_per_token=float((-group.answer_logprob / group.answer_tokens).mean()),
                   answer_tokens_mean=group.answer_tokens.mean())
    if "prompt_truncated" in group and group.prompt_truncated.notna().any():
        out["prompt_truncated_share"] = group.prompt_truncated.astype(float).mean()
    return out


def choice_count(choices) -> float:
    """How many choices a multiple-choice document offers; NaN for a free-form answer (choices empty)."""
    return float(len(choices)) if isinstance(choices, (list, tuple, np.ndarray)) else np.nan


def chance_columns(group: pd.DataFrame) -> dict:
    """Per-metric chance levels (a uniform guess over the choices; free-form answers: the task's baseline).
    Exact match and multiple-choice grade share the task's baseline (they agree for one correct choice);
    P(correct) is 1/k and the multi-class Brier score of the uniform distribution 1 - 1/k."""
    k = group.choices.map(choice_count).astype(float) if "choices" in group else None
    multiple_choice = k is not None and k.notna().all()
    return {"chance_exact_match": group.random_baseline.mean(), "chance_mc_grade": group.random_baseline.mean(),
            "chance_p_correct": (1 / k).mean() if multiple_choice else np.nan,
            "chance_brier_choices": (1 - 1 / k).mean() if multiple_choice else np.nan}


def aggregate(
    cell_files: list[str | Path],
    model_roots: list[str | Path],
    task_dirs: list[str | Path],
    samples_out: str | Path,
    cells_out: str | Path,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    published: list[str | Path] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join every cell's samples (Parquet files, or folders of them) with model and task metadata; summarise per
    cell; add the cells of published families (Parquet files, `emergence.published`); write both tables."""
    files = [f for c in map(Path, cell_files) for f in (sorted(c.rglob("*.parquet")) if c.is_dir() else [c])]
    samples, cells = (evaluated_cells(files, model_roots, task_dirs, n_resamples=n_resamples, seed=seed) if files
                      else (pd.DataFrame(columns=["model", "task", "strategy"]), pd.DataFrame()))
    cells = pd.concat([cells.assign(source="evaluated"), *map(pd.read_parquet, published)], ignore_index=True)
    cells = cells.sort_values(["task", "strategy", "family", "train_flops", "model"], ignore_index=True)
    cells["final_checkpoint"] = cells.final_checkpoint.astype(bool)

    for table, path in ((samples, samples_out), (cells, cells_out)):
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
    return samples, cells


def evaluated_cells(files: list[Path], model_roots, task_dirs, *, n_resamples: int, seed: int):
    """Per-sample files of this study's own evaluations -> (samples, cells)."""
    samples = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    models = model_table(model_roots)
    samples = samples.merge(models.drop(columns=["model_dir", "source_model"]), on="model", how="left",
                            validate="many_to_one")
    samples = samples.merge(task_table(task_dirs), on="task", how="left", validate="many_to_one")
    if samples.train_flops.isna().any():
        missing = sorted(samples.loc[samples.train_flops.isna(), "model"].unique())
        raise ValueError(f"samples from models without metadata: {missing}")
    samples["token_edit_distance"] = token_edit_distances(samples, dict(zip(models.model, models.model_dir)))
    samples["target_ce"] = -samples.target_logprob
    samples["target_ce_per_token"] = metrics.target_ce_per_token(samples.target_logprob, samples.target_tokens)
    samples = samples.sort_values(["task", "strategy", "train_flops", "model", "doc_id"], ignore_index=True)

    keys = ["model", "task", "strategy"]
    rows = []
    for (model, task, strategy), group in samples.groupby(keys, sort=True):
        cell_seed = metrics.seed_for(model, task, strategy, base=seed)
        rows.append({"model": model, "task": task, "strategy": strategy,
                     **summarize_cell(group, n_resamples=n_resamples, seed=cell_seed)})
    cells = pd.DataFrame(rows)
    cells = cells.merge(samples.drop_duplicates("model")[["model", *MODEL_COLUMNS]], on="model")
    cells = cells.merge(models[["model", "source_model"]], on="model")
    return samples, cells.merge(task_table(task_dirs), on="task")


def spearman_flops_vs_ce(cells: pd.DataFrame, task: str, strategy: str) -> float:
    """Rank correlation of training FLOPs with target CE per token over all checkpoints of a task x strategy."""
    sub = cells[(cells.task == task) & (cells.strategy == strategy)]
    return float(sub.train_flops.rank().corr(sub.target_ce_per_token.rank()))


def cells_markdown(cells: pd.DataFrame) -> str:
    """The cells table as Markdown (final checkpoints first read best sorted by task, strategy, FLOPs)."""
    cols = ["task", "strategy", "model", "params", "train_flops", "n", "exact_match", "exact_match_ci_low",
            "exact_match_ci_high", "target_ce_per_token", "p_all_tokens"]
    view = cells[cols].copy()
    view["train_flops"] = view.train_flops.map(lambda x: f"{x:.2e}")
    for c in ("exact_match", "exact_match_ci_low", "exact_match_ci_high", "target_ce_per_token", "p_all_tokens"):
        view[c] = view[c].map(lambda x: f"{x:.3f}" if np.isfinite(x) else "")
    header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return header + "".join("| " + " | ".join(map(str, r)) + " |\n" for r in view.itertuples(index=False))


def write_cells_tables(cells_path: str | Path, csv_out: str | Path, md_out: str | Path) -> None:
    cells = pd.read_parquet(cells_path)
    with atomic_path(csv_out) as tmp:
        cells.to_csv(tmp, index=False)
    with atomic_path(md_out) as tmp:
        tmp.write_text(cells_markdown(cells))
