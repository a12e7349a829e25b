rule bigbench_archive:
    """Download the pinned BIG-bench source archive once (checked against its sha256)."""
    output:
        archive=BIGBENCH_ARCHIVE,
    log:
        "results/logs/bigbench_archive.log",
    params:
        url=config["bigbench"]["archive_url"],
        sha256=config["bigbench"]["archive_sha256"],
    resources:
        mem_mb=500,
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/fetch_bigbench.py"


rule bigbench_task:
    """Extract one BIG-bench task's JSON files (with its subtasks') from the archive."""
    input:
        archive=BIGBENCH_ARCHIVE,
    output:
        task=directory(f"{BIGBENCH_DIR}/{{parent}}"),
    log:
        "results/logs/bigbench_task/{parent}.log",
    params:
        sha256=config["bigbench"]["archive_sha256"],
    resources:
        mem_mb=500,
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/extract_bigbench.py"


rule make_task:
    """One task's evaluation documents, few-shot pool and plain lm-eval views (generated, or converted from
    BIG-bench)."""
    input:
        unpack(task_source),
    output:
        task=directory("results/tasks/{task}"),
    log:
        "results/logs/make_task/{task}.log",
    params:
        spec=lambda wc: PLAN.tasks[wc.task],
    resources:
        mem_mb=500,
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/make_task.py"
