rule bigbench_archive:
    """Download the pinned BIG-bench source archive once (checked against its sha256)."""
    output:
        archive=BIGBENCH_ARCHIVE,
    log:
        layout.log("bigbench_archive", PLAN.bigbench_release),
    conda:
        "../envs/emergence.yaml"
    resources:
        mem_mb=500,
    params:
        url=config["bigbench"]["archive_url"],
        sha256=config["bigbench"]["archive_sha256"],
    script:
        "../scripts/fetch_bigbench.py"


rule bigbench_task:
    """Extract one BIG-bench task's JSON files (with its subtasks') from the archive."""
    input:
        archive=BIGBENCH_ARCHIVE,
    output:
        task=directory(layout.bigbench_task(PLAN.bigbench_release, "{parent}")),
    log:
        layout.log("bigbench_task", "{parent}"),
    conda:
        "../envs/emergence.yaml"
    resources:
        mem_mb=500,
    params:
        sha256=config["bigbench"]["archive_sha256"],
    script:
        "../scripts/extract_bigbench.py"


rule make_task:
    """One task's evaluation documents, few-shot pool and plain lm-eval views (generated, or converted from
    BIG-bench)."""
    input:
        unpack(task_source),
    output:
        task=directory(layout.task("{task}")),
    log:
        layout.log("make_task", "{task}"),
    conda:
        "../envs/emergence.yaml"
    resources:
        mem_mb=500,
    params:
        spec=lambda wc: PLAN.tasks[wc.task],
    script:
        "../scripts/make_task.py"
