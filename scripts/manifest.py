from emergence.provenance import write_manifest
from emergence.workflow import logged

with logged(snakemake.log[0]):
    write_manifest(
        snakemake.output.manifest,
        snakemake.output.config,
        config=snakemake.params.config,
        version=snakemake.params.version,
        code_hash=snakemake.params.code_hash,
        code_versions=snakemake.params.code_versions,
        basedir=snakemake.params.basedir,
        model_roots=snakemake.input.models,
        task_dirs=snakemake.input.tasks,
        published=snakemake.params.published,
    )
