from emergence.analysis import write_emergence_tables
from emergence.workflow import logged

with logged(snakemake.log[0]):
    out = snakemake.output
    write_emergence_tables(snakemake.input.cells, out.csv, out.md, out.tex, out.pl, margin=snakemake.params.margin)
