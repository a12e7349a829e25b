from emergence.aggregate import aggregate
from emergence.workflow import logged

with logged(snakemake.log[0]):
    aggregate(
        snakemake.input.cells,
        snakemake.input.models,
        snakemake.input.tasks,
        snakemake.output.samples,
        snakemake.output.cells,
        n_resamples=snakemake.params.n_resamples,
        seed=snakemake.params.seed,
        published=snakemake.input.published,
    )
