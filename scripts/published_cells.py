from emergence.published.cells import write_family_cells
from emergence.workflow import logged

with logged(snakemake.log[0]):
    write_family_cells(snakemake.params.family, snakemake.params.strategies, snakemake.output.cells)
