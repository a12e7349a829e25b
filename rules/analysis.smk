rule scaling_figure:
    """Exact match and target cross-entropy against training FLOPs for one task."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
    output:
        png=report(
            f"{VERSION_DIR}/figures/scaling_{{name}}.png",
            caption="../report/scaling.rst",
            category="Scaling",
            labels={"task": "{name}"},
        ),
        pdf=f"{VERSION_DIR}/figures/scaling_{{name}}.pdf",
    log:
        f"{VERSION_DIR}/logs/scaling_{{name}}.log",
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/scaling_figure.py"


rule pl_figure:
    """Exact match against its greedy and sampling p^L predictions."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
    output:
        png=report(f"{VERSION_DIR}/figures/pl_check.png", caption="../report/pl_check.rst", category="Mirage"),
        pdf=f"{VERSION_DIR}/figures/pl_check.pdf",
    log:
        f"{VERSION_DIR}/logs/pl_check.log",
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/pl_figure.py"


rule cells_table:
    """The cells as CSV and Markdown."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
    output:
        csv=report(f"{VERSION_DIR}/tables/cells.csv", caption="../report/cells.rst", category="Tables"),
        md=f"{VERSION_DIR}/tables/cells.md",
    log:
        f"{VERSION_DIR}/logs/cells_table.log",
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/cells_table.py"


ANALYSIS_PARAMS = {
    "margin": config["analysis"]["emergence_margin"],
    "n_resamples": config["analysis"]["bootstrap_samples"],
    "seed": config["analysis"]["seed"],
}


rule emergence_table:
    """Table-1 analogue: emergence scale with its interval, breakthroughness, linearity, predictability, verdict."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
        samples=f"{VERSION_DIR}/samples.parquet",
    output:
        csv=report(f"{VERSION_DIR}/tables/emergence.csv", caption="../report/emergence.rst", category="Tables"),
        md=f"{VERSION_DIR}/tables/emergence.md",
        tex=f"{VERSION_DIR}/tables/emergence.tex",
        pl=report(f"{VERSION_DIR}/tables/pl_deviation.csv", caption="../report/pl_deviation.rst", category="Tables"),
    log:
        f"{VERSION_DIR}/logs/emergence_table.log",
    # the forecast, the longest analysis job, waits for it
    priority: 1
    conda:
        "../envs/emergence.yaml"
    params:
        **ANALYSIS_PARAMS,
    script:
        "../scripts/emergence_table.py"


rule forecast:
    """Forecasts from the smaller half of each line, scored against the held-out larger models."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
        samples=f"{VERSION_DIR}/samples.parquet",
        emergence=f"{VERSION_DIR}/tables/emergence.csv",
    output:
        csv=report(f"{VERSION_DIR}/tables/forecast.csv", caption="../report/forecast_table.rst", category="Forecast"),
        models=f"{VERSION_DIR}/tables/forecast_models.csv",
        png=report(f"{VERSION_DIR}/figures/forecast.png", caption="../report/forecast.rst", category="Forecast"),
        pdf=f"{VERSION_DIR}/figures/forecast.pdf",
    log:
        f"{VERSION_DIR}/logs/forecast.log",
    # the longest analysis job (its figure has a panel per line): first to start once the emergence table exists
    priority: 1
    conda:
        "../envs/emergence.yaml"
    params:
        **ANALYSIS_PARAMS,
    script:
        "../scripts/forecast.py"


rule grid_figure:
    """Figure-2-style grid: one panel per task, a metric against a scale axis, emergence scales marked."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
        emergence=f"{VERSION_DIR}/tables/emergence.csv",
    output:
        png=report(
            f"{VERSION_DIR}/figures/grid_{{metric}}_vs_{{axis}}.png",
            caption="../report/grid.rst",
            category="Emergence",
            labels={"metric": "{metric}", "x axis": "{axis}"},
        ),
        pdf=f"{VERSION_DIR}/figures/grid_{{metric}}_vs_{{axis}}.pdf",
    log:
        f"{VERSION_DIR}/logs/grid_{{metric}}_vs_{{axis}}.log",
    wildcard_constraints:
        metric="|".join(m for m, _ in GRIDS),
        axis="|".join(x for _, x in GRIDS),
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/grid_figure.py"


rule augmentation:
    """Figure-3 analogue: each augmented strategy against its baseline per model shape, and from which scale it helps."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
        samples=f"{VERSION_DIR}/samples.parquet",
    output:
        csv=report(
            f"{VERSION_DIR}/tables/augmentation.csv",
            caption="../report/augmentation_table.rst",
            category="Augmented prompting",
        ),
        md=f"{VERSION_DIR}/tables/augmentation.md",
        png=report(
            f"{VERSION_DIR}/figures/augmentation.png",
            caption="../report/augmentation.rst",
            category="Augmented prompting",
        ),
        pdf=f"{VERSION_DIR}/figures/augmentation.pdf",
    log:
        f"{VERSION_DIR}/logs/augmentation.log",
    conda:
        "../envs/emergence.yaml"
    params:
        comparisons=PLAN.comparisons,
        n_resamples=config["analysis"]["bootstrap_samples"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/augmentation.py"
