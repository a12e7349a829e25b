# emergence: does an ability appear suddenly with scale, or only look sudden through its metric?
# Default study: `snakemake --cores 2`. Another study: `snakemake --cores 2 --configfile presets/<name>.yaml`.


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/tasks.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/published.smk"
include: "rules/analysis.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


onstart:
    check_network()


onsuccess:
    publish_version()
