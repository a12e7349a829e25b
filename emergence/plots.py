"""Paper-style figures from `cells.parquet` (one style for every figure; PNG for reading, PDF for papers)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from emergence.analysis import CHANCE_BOUNDED, scale_points, select_points  # noqa: E402

STYLE = {
    "figure.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,  # editable text in the PDF
    "svg.hashsalt": "emergence",
}
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig, png: str | Path, pdf: str | Path) -> None:
    for ax in fig.axes:  # log axes spanning under a decade label minor ticks, which then overlap
        if ax.get_xscale() == "log":
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None} if str(path).endswith(".pdf") else None)
    plt.close(fig)


def _panels(nrows: int, ncols: int, width: float, height: float):
    """(figure, axes [nrows, ncols]): panels of `width` x `height` inches, each with room for its tick and axis
    labels and a two-line title, placed by fixed margins (constrained layout measures every panel's labels again
    on each save: an eighth of the time of the published preset's forecast figure, ~90 panels)."""
    left, right, bottom, top = 0.6, 0.1, 0.45, 0.5
    fig_width, fig_height = width * ncols, height * nrows
    return plt.subplots(nrows, ncols, figsize=(fig_width, fig_height), squeeze=False, gridspec_kw={
        "left": left / fig_width, "right": 1 - right / fig_width, "bottom": bottom / fig_height,
        "top": 1 - top / fig_height, "wspace": (left + right) / (width - left - right),
        "hspace": (top + bottom) / (height - top - bottom)})


def _series(frame: pd.DataFrame):
    """(label, color, (strategy, family), rows) per strategy x family, rows sorted by FLOPs; colors are stable
    for the same strategy x family set, so a figure's lines match across panels."""
    groups = list(frame.groupby(["strategy", "family"], sort=True))
    for i, ((strategy, family), sub) in enumerate(groups):
        label = strategy if frame.family.nunique() == 1 else f"{family} {strategy}"
        yield label, COLORS[i % len(COLORS)], (strategy, family), sub.sort_values("train_flops")


def _seed_band(ax, line: pd.DataFrame, x: str, metric: str, color) -> None:
    """Shade the min-max spread over seeds where a size was trained with several seeds."""
    if (line.n_seeds > 1).any():
        ax.fill_between(line[x], line[f"{metric}_min"], line[f"{metric}_max"], color=color, alpha=0.2, lw=0)


def scaling_figure(cells: pd.DataFrame, task: str, png: str | Path, pdf: str | Path) -> None:
    """Exact match vs training FLOPs beside target cross-entropy per token vs training FLOPs, for one task.

    Lines join final checkpoints (one point per size: the mean over seeds, with its 95% interval; shaded: the
    spread over seeds); small hollow markers are intermediate checkpoints, so the training-time axis is visible
    too. The dashed line is the task's random baseline.
    """
    sub = cells[cells.task == task]
    points = scale_points(sub)
    with plt.rc_context(STYLE):
        fig, (ax_em, ax_ce) = plt.subplots(1, 2, figsize=(7.2, 2.8), layout="constrained")
        for label, color, (strategy, family), line in _series(points):
            err = np.vstack([line.exact_match - line.exact_match_ci_low, line.exact_match_ci_high - line.exact_match])
            ax_em.errorbar(line.train_flops, line.exact_match, yerr=err, color=color, marker="o", ms=4,
                           capsize=2, label=label)
            ax_ce.plot(line.train_flops, line.target_ce_per_token, color=color, marker="o", ms=4, label=label)
            _seed_band(ax_em, line, "train_flops", "exact_match", color)
            _seed_band(ax_ce, line, "train_flops", "target_ce_per_token", color)
            rest = sub[~sub.final_checkpoint & (sub.strategy == strategy) & (sub.family == family)]
            ax_em.scatter(rest.train_flops, rest.exact_match, s=12, facecolors="none", edgecolors=color, alpha=0.6)
            ax_ce.scatter(rest.train_flops, rest.target_ce_per_token, s=12, facecolors="none", edgecolors=color,
                          alpha=0.6)
        for baseline in sub.random_baseline.unique():
            ax_em.axhline(baseline, color="gray", ls="--", lw=1, label="random")
        ax_em.set(xscale="log", xlabel="Training FLOPs", ylabel="Exact match (%)", ylim=(-0.03, 1.03),
                  title=f"{task}: exact match")
        ax_em.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax_ce.set(xscale="log", xlabel="Training FLOPs", ylabel="Target cross-entropy (nats/token)",
                  title=f"{task}: cross-entropy")
        ax_em.legend(frameon=False)
        _save(fig, png, pdf)


def pl_figure(cells: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """Exact match against its two p^L predictions, with the identity line: left the greedy one (share of
    documents whose answer and stop tokens are all the argmax, the decoding exact match is scored under), right
    the sampling one (mean probability of sampling every gold token, Schaeffer et al.'s p^L).

    Points on the line mean exact match is what per-token probabilities predict; greedy exact match sits above
    the sampling prediction wherever the gold tokens are the argmax with probability under 1.
    """
    sides = [("pl_greedy", "greedy: answer + stop tokens all argmax"),
             ("pl_sampling" if "pl_sampling" in cells else "p_all_tokens", "sampling: mean of prod p_i")]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(6.6, 3.2), layout="constrained", sharey=True)
        for ax, (column, label) in zip(axes, sides):
            for i, (task, sub) in enumerate(cells.groupby("task", sort=True)):
                if column in sub:
                    ax.scatter(sub[column], sub.exact_match, s=14, color=COLORS[i % len(COLORS)], label=task,
                               alpha=0.8)
            ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="identity")
            ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel=f"$p^L$ ({label})",
                   title=f"$p^L$, {label.split(':')[0]}")
        axes[0].set_ylabel("Exact match (greedy decoding)")
        axes[0].legend(frameon=False, loc="upper left")
        _save(fig, png, pdf)


FORECAST_STYLES = {"linear": ":", "logistic": "--", "pl": "-"}


def forecast_figure(cells: pd.DataFrame, held_out: pd.DataFrame, forecast: pd.DataFrame, png, pdf) -> None:
    """One panel per task x strategy x family with a forecast: the paper metric of every model (filled: the
    models the forecasters were fitted on; hollow: the held-out larger ones), each forecaster's predictions at
    the held-out models with their 95% prediction intervals, and the cut-off as a dotted line."""
    points = scale_points(cells)
    lines = forecast[forecast.note.fillna("") == ""] if "note" in forecast else forecast
    ncols = max(1, min(3, len(lines)))
    nrows = max(1, -(-len(lines) // ncols))
    with plt.rc_context(STYLE):
        fig, axes = _panels(nrows, ncols, 2.8, 2.5)
        for ax, (_, row) in zip(axes.flat, lines.iterrows()):
            key = (points.task == row.task) & (points.strategy == row.strategy) & (points.family == row.family)
            line = points[key].sort_values("train_flops")
            fitted = line.train_flops <= row.cutoff_flops * (1 + 1e-9)
            ax.scatter(line.train_flops[fitted], line[row.metric][fitted], color="black", s=14, label="fitted")
            ax.scatter(line.train_flops[~fitted], line[row.metric][~fitted], facecolors="none", edgecolors="black",
                       s=18, label="held out")
            mine = held_out[(held_out.task == row.task) & (held_out.strategy == row.strategy)
                            & (held_out.family == row.family)]
            for i, (name, part) in enumerate(mine.groupby("forecaster", sort=False)):
                color = COLORS[i % len(COLORS)]
                ax.plot(part.model_flops, part.predicted, color=color, ls=FORECAST_STYLES.get(name, "-"),
                        label=f"{name} ({row[f'{name}_abs_error']:.2f})")
                ax.fill_between(part.model_flops, part.ci_low, part.ci_high, color=color, alpha=0.15, lw=0)
            ax.axvline(row.cutoff_flops, color="gray", ls=":", lw=1)
            ax.set(xscale="log", xlabel="Training FLOPs", ylabel=METRIC_LABELS.get(row.metric, row.metric),
                   title=f"{row.task} {row.strategy} {row.family}\nwinner: {row.winner}")
            ax.minorticks_off()  # a log axis's minor ticks, panel by panel, cost more than the rest of the figure
            ax.legend(frameon=False, fontsize=6, loc="upper left")
        for ax in list(axes.flat)[len(lines):]:
            ax.set_visible(False)
        if lines.empty:
            axes.flat[0].set_visible(True)
            axes.flat[0].text(0.5, 0.5, "no line with 4 or more models to forecast", ha="center", va="center")
        _save(fig, png, pdf)


AXES = {  # x column -> (label, log scale, invert so that better models sit to the right)
    "train_flops": ("Training FLOPs", True, False),
    "params": ("Parameters", True, False),
    "heldout_loss": ("Held-out loss on the training distribution (nats/token)", False, True),
}
METRIC_LABELS = {
    "paper": "The task's own metric",  # per panel: exact match, multiple-choice grade or BLEU (Wei et al. Fig. 2)
    "exact_match": "Exact match",
    "mc_grade": "Multiple-choice grade",
    "bleu": "BLEU",
    "target_ce_per_token": "Target cross-entropy (nats/token)",
    "token_edit_distance": "Token edit distance",
    "p_correct": "P(correct choice)",
    "brier_choices": "Brier score (choices)",
}


def grid_figure(cells: pd.DataFrame, emergence: pd.DataFrame, metric: str, x: str, png, pdf) -> None:
    """A Figure-2-style grid: one panel per task, `metric` against `x` over model sizes (seed means; shaded:
    spread over seeds), one line per family (and strategy), dashed random baseline for exact match, and a
    dotted vertical line at the emergence scale of each line that emerged."""
    if metric not in METRIC_LABELS or x not in AXES:
        raise ValueError(f"unknown grid {metric!r} vs {x!r}; metrics: {', '.join(METRIC_LABELS)}; "
                         f"axes: {', '.join(AXES)}")
    x_label, log_x, invert = AXES[x]
    points = scale_points(cells)
    panel_metric = {task: paper if metric == "paper" else metric for task, paper in zip(cells.task, cells.metric)}
    # tasks with something to draw (published results have no held-out loss, multiple choice no exact match)
    tasks = sorted(task for task, sub in points.groupby("task")
                   if (sub[x].notna() & sub[panel_metric[task]].notna()).any()) or ["(no data)"]
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols + 0.4, 2.3 * nrows + 0.3), squeeze=False,
                                 layout="constrained")
        for ax, task in zip(axes.flat, tasks):
            if task not in panel_metric:
                ax.text(0.5, 0.5, f"no {metric} against {x} in these cells", ha="center", transform=ax.transAxes)
                continue
            sub, metric_here = points[points.task == task], panel_metric[task]
            for label, color, (strategy, family), line in _series(sub):
                line = line.sort_values(x)
                ax.plot(line[x], line[metric_here], color=color, marker="o", ms=3.5, label=label)
                _seed_band(ax, line, x, metric_here, color)
                row = emergence[(emergence.task == task) & (emergence.metric == metric_here)
                                & (emergence.strategy == strategy) & (emergence.family == family)]
                if len(row) and row.emerged.iloc[0]:
                    at = line.loc[np.isclose(line.train_flops, row.emergence_flops.iloc[0]), x]
                    ax.axvline(at.iloc[0], color=color, ls=":", lw=1)
            if metric_here in CHANCE_BOUNDED:
                for baseline in sub.random_baseline.unique():
                    ax.axhline(baseline, color="gray", ls="--", lw=1, label="random")
                ax.set_ylim(-0.03, 1.03)
            ax.set(title=task, xscale="log" if log_x else "linear", xlabel=x_label,
                   ylabel=METRIC_LABELS[metric_here])
            if invert:
                ax.invert_xaxis()
        for ax in list(axes.flat)[len(tasks):]:
            ax.set_visible(False)
        axes.flat[0].legend(frameon=False)
        _save(fig, png, pdf)


def augmentation_figure(cells: pd.DataFrame, table: pd.DataFrame, comparisons: list[dict], png, pdf) -> None:
    """A Figure-3-style plot: for each augmented strategy (and task), exact match against training FLOPs with and
    without it (seed means; shaded: spread over seeds); the dotted line marks the scale from which it helps."""
    points = scale_points(cells)
    panels = list(table.groupby(["comparison", "task"], sort=False))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels) + 0.4, 2.7), squeeze=False,
                                 layout="constrained")
        by_name = {c["name"]: c for c in comparisons}
        for ax, ((name, task), rows) in zip(axes.flat, panels):
            for side, color, style in (("with", COLORS[0], "-"), ("without", COLORS[1], "--")):
                selector = by_name[name][side]
                line = select_points(points, selector, task).sort_values("train_flops")
                label = f"{selector['strategy']}" + (f" ({selector['family']})" if "family" in selector else "")
                ax.plot(line.train_flops, line.exact_match, color=color, ls=style, marker="o", ms=3.5, label=label)
                _seed_band(ax, line, "train_flops", "exact_match", color)
            if np.isfinite(rows.helps_from_flops.iloc[0]):
                ax.axvline(rows.helps_from_flops.iloc[0], color="gray", ls=":", lw=1, label="helps from")
            ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="Training FLOPs", ylabel="Exact match",
                   title=f"{name}\n{task}")
            ax.legend(frameon=False, loc="upper left")
        _save(fig, png, pdf)
