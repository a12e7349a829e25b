rule train_ladder:
    """Train one ladder run (one width and seed) and keep its log-spaced checkpoints."""
    output:
        run=directory("results/models/{run}"),
    log:
        "results/logs/train_ladder/{run}.log",
    params:
        settings=lambda wc: PLAN.runs[wc.run]["settings"],
    threads: config["threads"]["train"]
    resources:
        mem_mb=2000,
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/train_ladder.py"
