from pathlib import Path

from emergence.evaluate import Cell, evaluate_run
from emergence.strategies import Strategy
from emergence.workflow import logged

with logged(snakemake.log[0]):
    params = snakemake.params
    cells = [Cell(Path(task_dir), Strategy(**spec), Path(out)) for task_dir, spec, out in params.cells]
    evaluate_run(snakemake.input.model, cells, batch_size=params.batch_size, backend=params.backend,
                 device=params.device, seed=params.seed, threads=snakemake.threads, limit=params.limit)
