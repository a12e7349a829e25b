rule scaling_figure:
    """Exact match and target cross-entropy against training FLOPs for one task."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
    output:
        png=report(f"{VERSION_DIR}/figures/scaling_{{name}}.png", caption="../report/scaling.rst",
                   category="Scaling", labels={"task": "{name}"}),
        pdf=f"{VERSION_DIR}/figures/scaling_{{name}}.pdf",
    log:
        f"{VERSION_DIR}/logs/scaling_{{name}}.log",
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/scaling_figure.py"


rule pl_figure:
    """Exact match against the p^L prediction from per-token probabilities."""
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
