"""Rebuild the shipped published results from the upstream files (run from the repository root):

    python -m emergence.data.published.rebuild --pythia <EleutherAI/pythia checkout or bare git dir> \
        --obsscaling <ryoungj/ObsScaling checkout or bare git dir>

Reads the pinned commits (a bare git directory is read with `git show <commit>:<path>`; a checkout must be at
that commit), keeps what the pipeline reads and writes `pythia.csv`, `obsscaling.csv` and `PROVENANCE.json`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
PYTHIA = {"repository": "https://github.com/EleutherAI/pythia",
          "commit": "a19eecb807ec2c79a39ebf18108816e6ffffc1d5", "folder": "evals/pythia-v1"}
OBSSCALING = {"repository": "https://github.com/ryoungj/ObsScaling",
              "commit": "4d6e1e43fd2635d04654aa77d1df9d5266ea0382",
              "files": ["eval_results/base_llm_emergent_capability_eval.csv",
                        "eval_results/base_llm_benchmark_eval.csv"]}
# The standard and deduplicated suites at zero and five shots (not the batch-size, bf16 or intervention runs); their
# model_args name the v1.1 repositories, which the hub now serves as EleutherAI/pythia-<size>[-deduped].
PYTHIA_RUN = re.compile(r"^pythia-[0-9.]+[mb](-deduped)?/(zero-shot|five-shot)/[^/]+\.json$")
PYTHIA_TASKS = ("lambada_openai", "piqa", "arc_easy", "arc_challenge", "sciq", "winogrande", "logiqa", "wsc")
PYTHIA_METRICS = ("acc", "ppl")
OBS_UNITS = {"Model Size (B)": ("params", 1e9), "Pretraining Data Size (T)": ("train_tokens", 1e12),
             "FLOPs (1E21)": ("train_flops", 1e21)}


class Upstream:
    """Files of one repository at one commit, from a checkout or a bare git directory."""

    def __init__(self, path: str, commit: str):
        self.path, self.commit = Path(path), commit
        self.bare = not (self.path / ".git").exists() and (self.path / "HEAD").exists()

    def list(self, folder: str) -> list[str]:
        if self.bare:
            out = subprocess.run(["git", "-C", str(self.path), "ls-tree", "-r", "--name-only", self.commit, folder],
                                 capture_output=True, text=True, check=True).stdout
            return sorted(out.split())
        return sorted(str(p.relative_to(self.path)) for p in (self.path / folder).rglob("*") if p.is_file())

    def read(self, path: str) -> bytes:
        if self.bare:
            return subprocess.run(["git", "-C", str(self.path), "show", f"{self.commit}:{path}"],
                                  capture_output=True, check=True).stdout
        return (self.path / path).read_bytes()


def pythia_rows(repo: Upstream, checksums: dict) -> list[dict]:
    rows = []
    for path in repo.list(PYTHIA["folder"]):
        relative = path[len(PYTHIA["folder"]) + 1:]
        if not PYTHIA_RUN.match(relative):
            continue
        raw = repo.read(path)
        checksums[path] = hashlib.sha256(raw).hexdigest()
        result = json.loads(raw)
        args = dict(part.split("=", 1) for part in result["config"]["model_args"].split(","))
        model = args["pretrained"].replace("pythia-v1.1-", "pythia-")
        step = int(args["revision"].removeprefix("step"))
        for task in PYTHIA_TASKS:
            for metric in PYTHIA_METRICS:
                if metric in result["results"].get(task, {}):
                    values = result["results"][task]
                    rows.append({"model": model, "step": step, "num_fewshot": result["config"]["num_fewshot"],
                                 "task": task, "metric": metric, "value": values[metric],
                                 "stderr": values.get(f"{metric}_stderr", ""), "source_file": relative})
    return sorted(rows, key=lambda r: (r["model"], r["num_fewshot"], r["step"], r["task"], r["metric"]))


def obsscaling_rows(repo: Upstream, checksums: dict) -> list[dict]:
    tables = {}
    for path in OBSSCALING["files"]:
        raw = repo.read(path)
        checksums[path] = hashlib.sha256(raw).hexdigest()
        tables[path] = list(csv.DictReader(io.StringIO(raw.decode())))
    emergent, benchmark = (tables[p] for p in OBSSCALING["files"])
    scale = {row["Model"]: row for row in benchmark}
    rows = []
    for row in emergent:
        meta = scale.get(row["Model"], {})
        out = {"model": row["Model"], "family": meta.get("Model Family", "")}
        for column, (name, unit) in OBS_UNITS.items():
            out[name] = f"{float(meta[column]) * unit:.6g}" if meta.get(column) else ""
        rows.append({**out, **{k: v for k, v in row.items() if k != "Model"}})  # empty stays empty: no result
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pythia", required=True)
    parser.add_argument("--obsscaling", required=True)
    args = parser.parse_args()
    pythia_sums, obs_sums = {}, {}
    write_csv(HERE / "pythia.csv", pythia_rows(Upstream(args.pythia, PYTHIA["commit"]), pythia_sums))
    write_csv(HERE / "obsscaling.csv", obsscaling_rows(Upstream(args.obsscaling, OBSSCALING["commit"]), obs_sums))
    provenance = {
        "pythia.csv": {**PYTHIA, "license": "Apache-2.0", "kept": {
            "folders": "pythia-<size>[-deduped]/{zero-shot,five-shot}", "tasks": list(PYTHIA_TASKS),
            "metrics": list(PYTHIA_METRICS), "model": "model_args' pretrained=EleutherAI/pythia-v1.1-<size> "
                                                      "written as EleutherAI/pythia-<size> (its hub name)"},
            "sha256": pythia_sums},
        "obsscaling.csv": {**OBSSCALING, "license": "Apache-2.0", "kept": {
            "columns": "the emergent-capability results as they are (empty = no result); family, params (total), "
                       "train_tokens and train_flops (6 x total params x tokens) from the benchmark table, in units"},
            "sha256": obs_sums},
        "shipped_sha256": {name: hashlib.sha256((HERE / name).read_bytes()).hexdigest()
                           for name in ("pythia.csv", "obsscaling.csv")},
    }
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1) + "\n")


if __name__ == "__main__":
    main()
