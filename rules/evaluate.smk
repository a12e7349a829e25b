rule evaluate:
    """Every checkpoint of one run on one task with one strategy: per-sample Parquet."""
    input:
        model=layout.model_run("{run}"),
        task=layout.task("{task}"),
    output:
        samples=layout.cell_file(layout.run_cells("{run}"), "{task}", "{strategy}"),
    log:
        layout.log("evaluate", "{run}/{task}/{strategy}"),
    params:
        strategy=lambda wc: PLAN.strategies[wc.strategy],
        batch_size=config["evaluation"]["batch_size"],
        backend=config["evaluation"]["backend"],
        device=config["evaluation"]["device"],
        limit=config["evaluation"]["limit"],
        seed=config["evaluation"]["seed"],
    threads: config["threads"]["evaluate"]
    resources:
        mem_mb=config["evaluation"]["mem_mb"],
        gpu=config["evaluation"]["gpus"],
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/evaluate.py"


rule evaluate_run:
    """Every cell of one run in one job, each checkpoint loaded once (`evaluation.cells_per_job: run`)."""
    input:
        model=layout.model_run("{run}"),
        tasks=lambda wc: sorted({layout.task(task) for task, _ in run_cells(wc.run)}),
    output:
        cells=directory(layout.cell_set("{run}", "{cellset}")),
    log:
        layout.log("evaluate_run", "{run}/{cellset}"),
    params:
        cells=lambda wc: [(layout.task(task), PLAN.strategies[strategy],
                           layout.cell_file(layout.cell_set(wc.run, wc.cellset), task, strategy))
                          for task, strategy in run_cells(wc.run)],
        n_cells=lambda wc: len(run_cells(wc.run)),
        listing=lambda wc: ", ".join(f"{PLAN.tasks[t]['task']} x {PLAN.strategies[s]['name']}"
                                     for t, s in run_cells(wc.run)),
        batch_size=config["evaluation"]["batch_size"],
        backend=config["evaluation"]["backend"],
        device=config["evaluation"]["device"],
        limit=config["evaluation"]["limit"],
        seed=config["evaluation"]["seed"],
    wildcard_constraints:
        cellset=r"cells-[0-9a-f]{8}",
    message:
        "Evaluating every checkpoint of {wildcards.run} on {params.n_cells} cells (task x strategy): {params.listing}"
    threads: config["threads"]["evaluate"]
    resources:
        mem_mb=config["evaluation"]["mem_mb"],
        gpu=config["evaluation"]["gpus"],
    conda:
        "../envs/emergence.yaml"
    script:
        "../scripts/evaluate_run.py"
