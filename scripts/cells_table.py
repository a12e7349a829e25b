from emergence.aggregate import write_cells_tables
from emergence.workflow import logged

with logged(snakemake.log[0]):
    write_cells_tables(snakemake.input.cells, snakemake.output.csv, snakemake.output.md)
