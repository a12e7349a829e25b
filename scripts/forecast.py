import pandas as pd

from emergence.analysis import write_forecast
from emergence.plots import forecast_figure
from emergence.workflow import logged

with logged(snakemake.log[0]):
    out, params = snakemake.output, snakemake.params
    table, held_out = write_forecast(snakemake.input.cells, snakemake.input.samples, snakemake.input.emergence,
                                     out.csv, out.models, margin=params.margin,
                                     n_resamples=params.n_resamples, seed=params.seed)
    forecast_figure(pd.read_parquet(snakemake.input.cells), held_out, table, out.png, out.pdf)
