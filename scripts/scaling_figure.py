import pandas as pd

from emergence.plots import scaling_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    cells = pd.read_parquet(snakemake.input.cells)
    scaling_figure(cells, snakemake.wildcards.name, snakemake.output.png, snakemake.output.pdf)
