import pandas as pd

from emergence.analysis import write_augmentation
from emergence.plots import augmentation_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    out, params = snakemake.output, snakemake.params
    table = write_augmentation(snakemake.input.cells, snakemake.input.samples, params.comparisons, out.csv, out.md,
                               n_resamples=params.n_resamples, seed=params.seed)
    augmentation_figure(pd.read_parquet(snakemake.input.cells), table, params.comparisons, out.png, out.pdf)
