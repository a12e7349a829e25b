from emergence.published.figures import write_overlay
from emergence.workflow import logged

with logged(snakemake.log[0]):
    write_overlay(snakemake.input.cells, snakemake.output.csv, snakemake.output.png, snakemake.output.pdf)
