from emergence.tasks.bigbench import fetch_archive
from emergence.workflow import logged

with logged(snakemake.log[0]):
    fetch_archive(snakemake.output.archive, url=snakemake.params.url, sha256=snakemake.params.sha256)
