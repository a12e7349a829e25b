rule evaluate:
    """One evaluation job: every checkpoint of one run on the job's cells (task x strategy), each checkpoint loaded
    once. `evaluation.cells_per_job` makes a job one cell or every cell of the run."""
    input:
        model=layout.model_run("{run}"),
        tasks=lambda wc: sorted({layout.task(task) for task, _ in EVALUATION_JOBS[wc.run, wc.job]}),
    output:
        cells=directory(layout.evaluation_job("{run}", "{job}")),
    log:
        layout.log("evaluate", "{run}/{job}"),
    wildcard_constraints:
        job=r"cells-[0-9a-f]{8}",
    conda:
        "../envs/emergence.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        mem_mb=config["evaluation"]["mem_mb"],
        gpu=config["evaluation"]["gpus"],
    params:
        cells=lambda wc: [
            (
                layout.task(task),
                PLAN.strategies[strategy],
                layout.cell_file(layout.evaluation_job(wc.run, wc.job), task, strategy),
            )
            for task, strategy in EVALUATION_JOBS[wc.run, wc.job]
        ],
        listing=lambda wc: ", ".join(
            f"{PLAN.tasks[task]['task']} x {PLAN.strategies[strategy]['name']}"
            for task, strategy in EVALUATION_JOBS[wc.run, wc.job]
        ),
        batch_size=config["evaluation"]["batch_size"],
        backend=config["evaluation"]["backend"],
        device=config["evaluation"]["device"],
        limit=config["evaluation"]["limit"],
        seed=config["evaluation"]["seed"],
    message:
        "Evaluating every checkpoint of {wildcards.run} on {params.listing}"
    script:
        "../scripts/evaluate.py"
