rule aggregate:
    """All cells of the study -> samples.parquet and cells.parquet (bootstrap intervals, model metadata)."""
    input:
        cells=evaluation_outputs(),
        models=run_dirs(),
        tasks=task_dirs(),
        published=published_files(),
    output:
        samples=f"{VERSION_DIR}/samples.parquet",
        cells=f"{VERSION_DIR}/cells.parquet",
    log:
        f"{VERSION_DIR}/logs/aggregate.log",
    conda:
        "../envs/emergence.yaml"
    resources:
        mem_mb=2000,
    params:
        n_resamples=config["analysis"]["bootstrap_samples"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/aggregate.py"


rule manifest:
    """Provenance of this version: config, code, packages, model metadata, data checksums."""
    input:
        cells=f"{VERSION_DIR}/cells.parquet",
        models=run_dirs(),
        tasks=task_dirs(),
    output:
        manifest=f"{VERSION_DIR}/manifest.json",
        config=f"{VERSION_DIR}/config.yaml",
    log:
        f"{VERSION_DIR}/logs/manifest.log",
    conda:
        "../envs/emergence.yaml"
    params:
        config=config,
        version=PLAN.version,
        code_hash=PLAN.code_hash,
        code_versions=PLAN.code_versions,
        basedir=workflow.basedir,
        published={name: spec["files"] for name, spec in PLAN.published.items()},
    script:
        "../scripts/manifest.py"
