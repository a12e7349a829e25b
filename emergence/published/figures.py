"""Figures and the overlay table of published results: one line per family (Figure 2 of real families), and a
study's own evaluations beside the published numbers of the same model, task and strategy."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emergence.io import atomic_path
from emergence.plots import METRIC_LABELS, STYLE, _save

MARKERS = "osD^v<>ph*"
OVERLAY_COLUMNS = [
    "model", "published_model", "task", "strategy", "checkpoint_step", "train_flops", "metric", "own", "own_ci_low",
    "own_ci_high", "published", "published_ci_low", "published_ci_high", "difference", "difference_ci_low",
    "difference_ci_high", "within_interval", "published_file", "published_sha256",
]


def _panels(cells: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(cells.groupby(["task", "strategy"]).groups)


def _grid(n: int, ncols: int = 4):
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.7 * ncols + 0.4, 2.4 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def families_figure(cells: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """Every published task x strategy: its paper metric against training FLOPs over final checkpoints, one line
    per family (a colour and marker each, one legend for the figure), dashed chance level."""
    finals = cells[(cells.source == "published") & cells.final_checkpoint]
    families = sorted(finals.family.unique())
    cmap = plt.get_cmap("tab20")
    style = {f: (cmap(i % 20), MARKERS[i // 20 % len(MARKERS)]) for i, f in enumerate(families)}
    panels = _panels(finals)
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(panels))
        for ax, (task, strategy) in zip(axes.flat, panels):
            sub = finals[(finals.task == task) & (finals.strategy == strategy)].sort_values("train_flops")
            metric = sub.metric.iloc[0]
            for family, line in sub.groupby("family"):
                color, marker = style[family]
                ax.plot(line.train_flops, line[metric], color=color, marker=marker, ms=3.5, lw=1, label=family)
            if (baseline := sub.random_baseline.max()) > 0:
                ax.axhline(baseline, color="gray", ls="--", lw=1)
            ax.set(title=f"{task} ({strategy})", xscale="log", xlabel="Training FLOPs", ylabel=METRIC_LABELS[metric])
        handles = [plt.Line2D([], [], color=c, marker=m, lw=1, ms=4) for c, m in style.values()]
        fig.legend(handles, families, loc="outside lower center", ncols=min(6, len(families)), frameon=False)
        _save(fig, png, pdf)


def _model_name(names: pd.Series) -> pd.Series:
    """A hub repository, local folder or published model name -> its last part, lower case (the matching key)."""
    return names.astype(str).str.rstrip("/").str.split("/").str[-1].str.lower()


def overlay_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Own cells (hub or local models) beside published cells of the same model (by its repository or folder name),
    task, strategy and checkpoint step (a published file without steps matches final checkpoints): both values
    with their 95% intervals, own minus published with the intervals combined in quadrature, and whether the
    difference's interval holds 0."""
    own = cells[(cells.source == "evaluated") & cells.source_model.notna()].copy() if "source_model" in cells \
        else cells.iloc[:0]
    published = cells[cells.source == "published"].copy()
    own["key"], published["key"] = _model_name(own.source_model), _model_name(published.published_model)
    both = own.merge(published, on=["key", "task", "strategy"], suffixes=("", "_pub"))
    same_step = (both.checkpoint_step == both.checkpoint_step_pub) | (
        both.checkpoint_step_pub.isna() & both.final_checkpoint & both.final_checkpoint_pub)
    rows = []
    for _, row in both[same_step].iterrows():
        metric = row["metric_pub"]
        own_value, pub_value = row[metric], row[f"{metric}_pub"]
        half = np.hypot((row[f"{metric}_ci_high"] - row[f"{metric}_ci_low"]) / 2,
                        (row[f"{metric}_ci_high_pub"] - row[f"{metric}_ci_low_pub"]) / 2)
        diff = own_value - pub_value
        rows.append({
            "model": row["model"], "published_model": row["published_model_pub"], "task": row["task"],
            "strategy": row["strategy"], "checkpoint_step": row["checkpoint_step"], "train_flops": row["train_flops"],
            "metric": metric, "own": own_value, "own_ci_low": row[f"{metric}_ci_low"],
            "own_ci_high": row[f"{metric}_ci_high"], "published": pub_value,
            "published_ci_low": row[f"{metric}_ci_low_pub"], "published_ci_high": row[f"{metric}_ci_high_pub"],
            "difference": diff, "difference_ci_low": diff - half, "difference_ci_high": diff + half,
            "within_interval": bool(abs(diff) <= half) if np.isfinite(half) else np.nan,
            "published_file": row["published_file_pub"], "published_sha256": row["published_sha256_pub"],
        })
    return pd.DataFrame(rows, columns=OVERLAY_COLUMNS)


def overlay_figure(table: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """Per task x strategy: own values (filled) and published ones (hollow) of the same models against FLOPs."""
    panels = _panels(table) or [("", "")]
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(panels))
        for ax, (task, strategy) in zip(axes.flat, panels):
            sub = table[(table.task == task) & (table.strategy == strategy)].sort_values("train_flops")
            if sub.empty:
                ax.text(0.5, 0.5, "no model evaluated here\nhas published results", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            for name, marker, face in (("own", "o", "C0"), ("published", "s", "none")):
                err = np.vstack([sub[name] - sub[f"{name}_ci_low"], sub[f"{name}_ci_high"] - sub[name]])
                ax.errorbar(sub.train_flops, sub[name], yerr=np.nan_to_num(err), fmt=marker, ms=4, capsize=2,
                            color="C0" if name == "own" else "C1", mfc=face, label=name)
            ax.set(title=f"{task} ({strategy})", xscale="log", xlabel="Training FLOPs",
                   ylabel=METRIC_LABELS[sub.metric.iloc[0]])
        axes.flat[0].legend(frameon=False)
        _save(fig, png, pdf)


def write_overlay(cells_path, csv_out, png, pdf) -> pd.DataFrame:
    table = overlay_table(pd.read_parquet(cells_path))
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    overlay_figure(table, png, pdf)
    return table
