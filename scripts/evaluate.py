from emergence.evaluate import evaluate_cells
from emergence.strategies import Strategy
from emergence.workflow import logged

with logged(snakemake.log[0]):
    evaluate_cells(
        snakemake.input.model,
        snakemake.input.task,
        Strategy(**snakemake.params.strategy),
        snakemake.output.samples,
        batch_size=snakemake.params.batch_size,
        backend=snakemake.params.backend,
        device=snakemake.params.device,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        limit=snakemake.params.limit,
    )
