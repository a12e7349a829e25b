from pathlib import Path

from emergence.evaluate import Cell, evaluate_run
from emergence.strategies import Strategy
from emergence.workflow import logged

with logged(snakemake.log[0]):
    out = Path(snakemake.output.cells)
    cells = [Cell(Path("results/tasks") / task, Strategy(**spec), out / task / f"{key}.parquet")
             for task, spec, key in snakemake.params.cells]
    evaluate_run(snakemake.input.model, cells, batch_size=snakemake.params.batch_size, seed=snakemake.params.seed,
                 threads=snakemake.threads, limit=snakemake.params.limit)
