from emergence.models.families import fetch_run
from emergence.workflow import logged

with logged(snakemake.log[0]):
    fetch_run(snakemake.params.settings, snakemake.output.run)
