from emergence.tasks.catalog import write_task
from emergence.workflow import logged

with logged(snakemake.log[0]):
    write_task(snakemake.params.spec, snakemake.output.task, source_dir=snakemake.input.get("source"))
