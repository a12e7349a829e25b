from emergence.tasks.arithmetic import write_arithmetic_task
from emergence.workflow import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    write_arithmetic_task(spec["task"], snakemake.output.task, **spec["settings"])
