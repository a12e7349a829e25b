import pandas as pd

from emergence.published.figures import families_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    families_figure(pd.read_parquet(snakemake.input.cells), snakemake.output.png, snakemake.output.pdf)
