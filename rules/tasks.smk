rule make_task:
    """Generate one task's held-out items and its lm-eval YAML views."""
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
