import pandas as pd

from emergence.plots import grid_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    cells, emergence = pd.read_parquet(snakemake.input.cells), pd.read_csv(snakemake.input.emergence)
    wc = snakemake.wildcards
    grid_figure(cells, emergence, wc.metric, wc.axis, snakemake.output.png, snakemake.output.pdf)
