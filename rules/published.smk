rule published_cells:
    """A `source: published` family's result files -> its cells (no inference; emergence/published/)."""
    input:
        files=lambda wc: list(PLAN.published[wc.family]["files"]),
    output:
        cells=f"{VERSION_DIR}/published/{{family}}.parquet",
    log:
        f"{VERSION_DIR}/logs/published_{{family}}.log",
    conda:
        "../envs/emergence.yaml"
    params:
        family=lambda wc: PLAN.published[wc.family]["family"],
        strategies=config["strategies"],
    script:
        "../scripts/published_cells.py"


rule published_families:
    """Figure 2 of real families: each published task x strategy against training FLOPs, one line per family."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
    output:
        png=report(
            f"{VERSION_DIR}/figures/published_families.png",
            caption="../report/published_families.rst",
            category="Published results",
        ),
        pdf=f"{VERSION_DIR}/figures/published_families.pdf",
    log:
        f"{VERSION_DIR}/logs/published_families.log",
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/published_families.py"


rule published_overlay:
    """Own evaluations beside published results of the same model, task and strategy, with their difference."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
    output:
        csv=report(
            f"{VERSION_DIR}/tables/published_overlay.csv",
            caption="../report/published_overlay.rst",
            category="Published results",
        ),
        png=f"{VERSION_DIR}/figures/published_overlay.png",
        pdf=f"{VERSION_DIR}/figures/published_overlay.pdf",
    log:
        f"{VERSION_DIR}/logs/published_overlay.log",
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/published_overlay.py"
