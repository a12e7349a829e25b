"""Model families that are not trained here (`source: hf` or `source: local`) -> runs.

A run is one model; a hub model's revisions (Pythia's `step3000`, ...) are its checkpoints, so the training-time
axis works as for the ladder. Scale metadata comes from the suite table (`suites.yaml`) or the member's own keys;
parameter counts are read from the weights when they arrive.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from emergence.models.hub import checkpoint_step_of, fetch_hub_model, revision_dir_name
from emergence.models.local import link_local_model

METADATA_KEYS = ("params", "nonembedding_params", "train_tokens", "tokens_per_step", "seed")


@cache
def suites() -> dict:
    return yaml.safe_load((resources.files("emergence.models") / "suites.yaml").read_text())


def members(family: dict) -> list[dict]:
    """Every model of a family: its suite's sizes, then its explicit members, each with its revisions and scale
    metadata (member keys win over the suite's)."""
    out = []
    if suite_name := family.get("suite"):
        suite = suites()[suite_name]
        for size in family.get("sizes") or suite["sizes"]:
            tokens = suite["train_tokens"]
            out.append({"label": size, "repo": suite["repo"].format(size=size),
                        "train_tokens": int(tokens[size] if isinstance(tokens, dict) else tokens),
                        **({"tokens_per_step": suite["tokens_per_step"]} if "tokens_per_step" in suite else {})})
    for member in family.get("members") or []:
        label = Path(member.get("repo") or member["path"]).name
        out.append({"label": label, **member})
    for member in out:
        member["label"] = re.sub(r"[^A-Za-z0-9._]", "_", member["label"])
        if family["source"] == "hf":
            member["revisions"] = member.get("revisions") or family.get("revisions") or ["main"]
    return out


def checkpoint_metadata(member: dict, revision: str | None) -> dict:
    """Scale metadata of one revision: a `stepN` revision saw N x tokens_per_step tokens (computed when fetched);
    any other revision is taken as the final model, with the member's train_tokens."""
    meta = {k: member[k] for k in METADATA_KEYS if k in member}
    step = checkpoint_step_of(revision)
    if step is not None and "tokens_per_step" in meta:
        meta.pop("train_tokens", None)
    elif "train_tokens" in meta and "tokens_per_step" in meta:
        meta["checkpoint_step"] = meta["train_tokens"] // meta["tokens_per_step"]
    return meta


def external_runs(family: dict) -> list[dict]:
    """One run per member: {run, settings, model_ids}; settings hold everything the fetch needs."""
    runs = []
    for member in members(family):
        run = f"{family['name']}-{member['label']}"
        if family["source"] == "hf":
            checkpoints = {revision: checkpoint_metadata(member, revision) for revision in member["revisions"]}
            settings = {"source": "hf", "family": family["name"], "run": run, "repo": member["repo"],
                        "checkpoints": checkpoints}
            model_ids = [f"{run}-{revision_dir_name(r)}" for r in member["revisions"]]
        else:
            settings = {"source": "local", "family": family["name"], "run": run, "path": member["path"],
                        "metadata": checkpoint_metadata(member, None)}
            model_ids = [run]
        runs.append({"run": run, "settings": settings, "model_ids": model_ids})
    return runs


def fetch_run(settings: dict, out_dir: str | Path) -> list[dict]:
    """Materialise one run under `out_dir`: each hub revision in `<out_dir>/<revision>/`, or a local model
    directory in `out_dir`. Returns the model.json of each checkpoint."""
    out_dir = Path(out_dir)
    if settings["source"] == "local":
        return [link_local_model(settings["path"], out_dir, family=settings["family"], model_id=settings["run"],
                                 run=settings["run"], final_checkpoint=True, **settings["metadata"])]
    revisions = list(settings["checkpoints"])
    return [fetch_hub_model(settings["repo"], revision, out_dir / revision_dir_name(revision),
                            family=settings["family"], model_id=f"{settings['run']}-{revision_dir_name(revision)}",
                            run=settings["run"], final_checkpoint=i == len(revisions) - 1,
                            **settings["checkpoints"][revision])
            for i, revision in enumerate(revisions)]
