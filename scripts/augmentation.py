import pandas as pd

from emergence.analysis import write_augmentation
from emergence.plots import augmentation_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    out, comparisons = snakemake.output, snakemake.params.comparisons
    table = write_augmentation(snakemake.input.cells, comparisons, out.csv, out.md)
    augmentation_figure(pd.read_parquet(snakemake.input.cells), table, comparisons, out.png, out.pdf)
