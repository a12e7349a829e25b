from emergence.ladder.train import TrainSettings, train_ladder_run
from emergence.workflow import logged

with logged(snakemake.log[0]):
    settings = TrainSettings.from_config(snakemake.params.settings, threads=snakemake.threads)
    train_ladder_run(settings, snakemake.output.run)
