rule train_ladder:
    """Train one ladder run (one width and seed) and keep its log-spaced checkpoints."""
    output:
        run=directory(layout.model_run("{run}")),
    log:
        layout.log("train_ladder", "{run}"),
    wildcard_constraints:
        run=escaped(runs_from("ladder")),
    priority: lambda wc: TRAINING_RANK[wc.run]
    conda:
        "../envs/emergence.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=2000,
    params:
        settings=lambda wc: PLAN.runs[wc.run]["settings"],
    script:
        "../scripts/train_ladder.py"


rule fetch_model:
    """One hub model (its revisions as checkpoints, pinned to commits, sha256-checked) or a local model directory."""
    output:
        run=directory(layout.model_run("{run}")),
    log:
        layout.log("fetch_model", "{run}"),
    wildcard_constraints:
        run=escaped(runs_from("hf", "local")),
    conda:
        "../envs/emergence.yaml"
    resources:
        mem_mb=2000,
    params:
        settings=lambda wc: PLAN.runs[wc.run]["settings"],
    script:
        "../scripts/fetch_model.py"
