"""The plan of a study, computed from the validated config and the code: which runs, tasks, strategies and cells.

Models, tasks and cells are content-addressed: their directory key is a readable name plus a short hash of
everything that defines them, the code version of the stage that produces them included (`codeversion`), so
studies and versions share every result they can, and a changed definition or changed code gets a new key
instead of overwriting the old result. Only aggregates and analysis are versioned per study.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from emergence import layout
from emergence.codeversion import stage_versions
from emergence.config import task_settings
from emergence.ladder import data, plan
from emergence.ladder.model import training_flops
from emergence.models.families import external_runs
from emergence.models.hub import check_hub_reachable
from emergence.published.cells import file_checksums
from emergence.strategies import KSHOT, load_strategy
from emergence.tasks import bigbench, catalog
from emergence.tasks.lm_eval_tasks import lm_eval_problem


def short_hash(obj, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def keyed(name: str, spec) -> str:
    """`addition_3digit` + its definition -> `addition_3digit-1a2b3c4d`."""
    return f"{name}-{short_hash(spec)}"


LADDER_TRAINING_KEYS = (
    "train_tokens", "batch_rows", "examples_per_row", "n_ctx", "lr", "weight_decay", "grad_clip",
    "warmup_fraction", "checkpoints", "first_checkpoint_fraction", "operations", "example_format", "document",
    "device", "lr_scaling_width", "token_width_exponent", "plus_one_share",
)


@dataclass
class StudyPlan:
    study: str
    version: str  # <config hash>-<code hash>
    code_hash: str  # over every stage's code version
    code_versions: dict = field(default_factory=dict)  # stage -> code version (see `codeversion`)
    runs: dict = field(default_factory=dict)  # run key -> {family, source, strategies, run, settings, model_ids}
    tasks: dict = field(default_factory=dict)  # task key -> {task, kind, settings, ...}
    strategies: dict = field(default_factory=dict)  # strategy key (covers the evaluation code) -> Strategy.spec()

    comparisons: list = field(default_factory=list)  # [{name, with: {strategy, family?}, without: {...}}]
    published: dict = field(default_factory=dict)  # family name -> {family (its config), files: {path: sha256}}
    bigbench_release: str = ""  # `bigbench-<version>-<sha8>`: the pinned archive's folder and file names

    def cells(self) -> list[tuple[str, str, str]]:
        """(run key, task key, strategy key) for every cell; a family may restrict its strategies."""
        return [(r, t, s) for r, run in self.runs.items() for t in self.tasks for s, spec in self.strategies.items()
                if run["strategies"] is None or spec["name"] in run["strategies"]]

    def evaluation_jobs(self, cells_per_job: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(run key, job name) -> the (task key, strategy key) cells one evaluation job computes: one cell
        (`cells_per_job: cell`) or every cell of the run (`run`). A job is named by its set of cells, so a changed
        set is another job and the old folder stays."""
        by_run = {}
        for run, task, strategy in self.cells():
            by_run.setdefault(run, []).append((task, strategy))
        groups = [(run, cells) for run, run_cells in by_run.items()
                  for cells in ([run_cells] if cells_per_job == "run" else [[cell] for cell in run_cells])]
        return {(run, keyed("cells", cells)): cells for run, cells in groups}


def ladder_runs(family: dict, training_code: str) -> dict:
    settings = {k: family[k] for k in LADDER_TRAINING_KEYS}
    settings["example_format"] = data.format_shares(settings["example_format"])  # "plain" means {plain: 1}
    runs = {}
    for width in family["widths"]:
        for seed in family["seeds"]:
            run = plan.run_name(family["name"], width, settings["n_ctx"], seed)
            run_settings = {**settings, "family": family["name"], "width": width, "seed": seed,
                            "lr": plan.peak_lr(settings["lr"], width, settings["lr_scaling_width"]),
                            "train_tokens": plan.run_tokens(settings["train_tokens"], width, max(family["widths"]),
                                                            settings["token_width_exponent"])}
            total = plan.total_steps(run_settings["train_tokens"], settings["batch_rows"], settings["n_ctx"],
                                     settings["examples_per_row"], settings["document"], settings["operations"],
                                     settings["example_format"])
            steps = plan.checkpoint_steps(total, settings["checkpoints"], settings["first_checkpoint_fraction"])
            runs[keyed(run, {**run_settings, "code": training_code})] = {
                "family": family["name"],
                "source": "ladder",
                "strategies": family.get("strategies"),
                "run": run,
                "settings": run_settings,
                "model_ids": [plan.checkpoint_id(run, step) for step in steps],
            }
    return runs


def training_cost(settings: dict) -> float:
    """A ladder run's planned training compute, 6 N D (what the scheduler orders training jobs by)."""
    size = plan.model_size(settings["width"], settings["n_ctx"])
    return training_flops(size.nonembedding_params(), settings["train_tokens"])


def external_family_runs(family: dict, models_code: str) -> dict:
    """Hub or local models: one run each (a hub model's revisions are its checkpoints)."""
    return {keyed(run["run"], {**run["settings"], "code": models_code}):
            {"family": family["name"], "strategies": family.get("strategies"), "source": family["source"], **run}
            for run in external_runs(family)}


def plan_study(config: dict, basedir: str | Path) -> StudyPlan:
    """The study's runs, tasks and strategies with their keys, and its version (config + code).

    Each key covers its stage's code version: a run the training (or fetching) code, a task the task-building
    code, a strategy the evaluation code (a strategy is evaluated, never built), so a cell, keyed by all three,
    follows every stage upstream of it.
    """
    code = stage_versions(basedir)
    code_hash = short_hash(code, 64)
    study = StudyPlan(study=config["study"], version=f"{short_hash(config)}-{code_hash[:8]}", code_hash=code_hash,
                      code_versions=code,
                      bigbench_release=f"bigbench-{bigbench.VERSION}-{config['bigbench']['archive_sha256'][:8]}")
    for family in config["models"]:
        if family["source"] == "published":  # cells from result files: no run, no inference
            study.published[family["name"]] = {"family": family, "files": file_checksums(family)}
            continue
        study.runs.update(ladder_runs(family, code["training"]) if family["source"] == "ladder"
                          else external_family_runs(family, code["models"]))
    for name in config["tasks"]:
        kind = catalog.kind_of(name, config["lm_eval_task_dirs"])
        for task in catalog.expand(name, kind):
            spec = {"task": task, "kind": kind, "settings": task_settings(config, task)}
            if kind == "bigbench":  # the data is the pinned archive's: its checksum is part of the definition
                spec["archive_sha256"] = config["bigbench"]["archive_sha256"]
                spec["parent"] = bigbench.parent_of(task)  # the extracted task it is converted from
                spec["shipped"] = bigbench.is_shipped(task)  # its file ships with the package: no archive needed
            elif kind == "lm_eval":
                spec["lm_eval_task_dirs"] = config["lm_eval_task_dirs"]
            study.tasks[keyed(task, {**spec, "code": code["tasks"]})] = spec
    for name in config["strategies"]:
        spec = load_strategy(name, config["strategy_dirs"]).spec()
        study.strategies[keyed(name, {**spec, "code": code["evaluation"]})] = spec
    study.comparisons = config["comparisons"] + automatic_comparisons(config)
    return study


def automatic_comparisons(config: dict) -> list[dict]:
    """Every augmented strategy against 0shot on each family that runs both (explicit ones come first); P(True)
    judges answers rather than giving them, so it is reported by its calibration instead."""
    out = []
    for family in config["models"]:
        names = family.get("strategies") or config["strategies"]
        if "0shot" not in names:
            continue
        for name in names:
            if not KSHOT.match(name) and load_strategy(name, config["strategy_dirs"]).kind == "generate":
                out.append({"name": f"{name} ({family['name']})", "with": {"strategy": name, "family": family["name"]},
                            "without": {"strategy": "0shot", "family": family["name"]}})
    return out


def network_problems(study: StudyPlan, cells_per_job: str, workdir: str | Path = ".") -> list[str]:
    """What cannot be fetched from here although this run needs it: hub models not yet downloaded and lm-eval
    tasks with evaluation jobs still to run (checked when a run starts, so dry runs and finished studies need no
    network)."""
    workdir = Path(workdir)
    problems = []
    if any(run["source"] == "hf" and not (workdir / layout.model_run(key)).exists()
           for key, run in study.runs.items()):
        problems += filter(None, [check_hub_reachable()])
    pending = {task for (run, job), cells in study.evaluation_jobs(cells_per_job).items()
               if not (workdir / layout.evaluation_job(run, job)).exists() for task, _ in cells}
    for key in sorted(pending):
        spec = study.tasks[key]
        if spec["kind"] == "lm_eval":
            problems += filter(None, [lm_eval_problem(spec["task"], spec["lm_eval_task_dirs"])])
    return problems
