from emergence.tasks.bigbench import extract_task
from emergence.workflow import logged

with logged(snakemake.log[0]):
    extract_task(snakemake.input.archive, snakemake.wildcards.parent, snakemake.output.task,
                 sha256=snakemake.params.sha256)
