import pandas as pd

from emergence.plots import pl_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    pl_figure(pd.read_parquet(snakemake.input.cells), snakemake.output.png, snakemake.output.pdf)
