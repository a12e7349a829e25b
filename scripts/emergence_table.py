from emergence.analysis import write_emergence_tables
from emergence.workflow import logged

with logged(snakemake.log[0]):
    out, params = snakemake.output, snakemake.params
    write_emergence_tables(snakemake.input.cells, snakemake.input.samples, out.csv, out.md, out.tex, out.pl,
                           margin=params.margin, n_resamples=params.n_resamples, seed=params.seed)
