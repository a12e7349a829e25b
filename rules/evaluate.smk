rule evaluate:
    """Every checkpoint of one run on one task with one strategy: per-sample Parquet."""
    input:
        model="results/models/{run}",
        task="results/tasks/{task}",
    output:
        samples="results/cells/{run}/{task}/{strategy}.parquet",
    log:
        "results/logs/evaluate/{run}/{task}/{strategy}.log",
    params:
        strategy=lambda wc: PLAN.strategies[wc.strategy],
        batch_size=config["evaluation"]["batch_size"],
        limit=config["evaluation"]["limit"],
        seed=config["evaluation"]["seed"],
    threads: config["threads"]["evaluate"]
    resources:
        mem_mb=2000,
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/evaluate.py"
