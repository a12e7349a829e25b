"""BIG-bench tasks from the published `bigbench` 1.0.0 source archive, converted into this pipeline's task format.

The archive (PyPI sdist, ~358 MB) holds `bigbench/benchmark_tasks/<task>/task.json` and `<task>/<subtask>/task.json`
for the JSON tasks. It is downloaded once, checked against a pinned sha256, and only the tasks a study names are
extracted. Each (sub)task becomes documents whose `question` is BIG-bench's formatted input (its input prefix,
appended choices and output prefix, exactly as `bigbench/api/json_task.py` builds them) so lm-eval's few-shot
assembly (`task_prefix` + exemplars joined by the task's separator + query) reproduces BIG-bench's prompts.

The few subtasks the default study evaluates ship with the package (`emergence/data/bigbench/`, byte-for-byte
copies with BIG-bench's licence and a PROVENANCE.json of their sha256s against the pinned archive): a study that
evaluates only those needs no download.

A parent task with subtasks (`modified_arithmetic`) expands into one task per subtask
(`modified_arithmetic.three_digit_addition_control`): subtasks differ in format and are scored separately, as
BIG-bench does before averaging.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from emergence import layout
from emergence.io import DataError, read_json, sha256_file
from emergence.tasks import shipped
from emergence.tasks.views import write_task_files

VERSION = "1.0.0"
# The archive's URL and pinned sha256 are config keys (bigbench.archive_url/archive_sha256, schema defaults).
TASKS_PREFIX = f"bigbench-{VERSION}/bigbench/benchmark_tasks/"
# JSON-format files of tasks that are otherwise programmatic (their task.py scores more than this file holds).
ALTERNATE_FILES = {"truthful_qa": "task_mc.json"}

# BIG-bench's defaults (bigbench/api/json_task.py) for the formatting fields a task may leave out.
FORMAT_DEFAULTS = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "append_choices_to_input": True,
    "few_shot_example_separator": "\n",
}
DEFAULT_OUTPUT_REGEX = r"[^\.\?\!\;\n]+"  # BIG-bench's answer extraction when a task sets neither regex nor stop
# BIG-bench's preferred score -> the column of this pipeline that measures it (others fall back by task kind).
PAPER_METRICS = {"exact_str_match": "exact_match", "bleu": "bleu", "multiple_choice_grade": "mc_grade"}


class BigBenchError(RuntimeError):
    """A problem obtaining or reading BIG-bench data, phrased with its fix."""


SHIPPED_DIR = layout.SHIPPED_BIGBENCH


def is_shipped(name: str) -> bool:
    """True when the (sub)task's JSON file ships with the package, so converting it needs no archive."""
    return task_index()[name]["file"] in shipped.shipped_files()


def shipped_source(name: str) -> Path:
    """The shipped folder of a (sub)task's parent, laid out as the extracted archive's."""
    return Path(layout.shipped_bigbench_task(parent_of(name)))


def ship(archive: str | Path, names: list[str], dest: str | Path, *, sha256: str) -> dict:
    """Copy the named subtasks' files unchanged from the archive into `dest` and write dest/PROVENANCE.json
    (how the shipped files were made: `python -m emergence.tasks.bigbench ship ARCHIVE SUBTASK...`)."""
    archive, dest = Path(archive), Path(dest)
    if sha256_file(archive) != sha256:
        raise BigBenchError(f"{archive} does not have the pinned sha256 {sha256}")
    wanted = {TASKS_PREFIX + task_index()[name]["file"]: task_index()[name]["file"] for name in names}
    files = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                target = dest / wanted[member.name]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                files[wanted[member.name]] = {"archive_path": member.name, "sha256": sha256_file(target),
                                              "bytes": target.stat().st_size}
    if missing := sorted(set(wanted.values()) - set(files)):
        raise BigBenchError(f"not in {archive}: {', '.join(missing)}")
    provenance = {
        "what": f"BIG-bench {VERSION} task files, byte-for-byte copies of the files below from the pinned archive",
        "upstream": "https://github.com/google/BIG-bench (Apache License 2.0, see LICENSE beside this file)",
        "archive": {"name": archive.name, "sha256": sha256, "bytes": archive.stat().st_size},
        "rebuild": "python -m emergence.tasks.bigbench ship ARCHIVE SUBTASK... (run in emergence/data/bigbench)",
        "files": dict(sorted(files.items())),
    }
    (dest / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


@cache
def task_index() -> dict:
    """Every JSON task and subtask of bigbench 1.0.0 -> {file, n_examples, multiple_choice, preferred_score};
    a parent lists its `subtasks` instead. Built from the archive by `build_index` and shipped with the package,
    so configs are checked before anything is downloaded."""
    return json.loads((resources.files("emergence.tasks") / "bigbench_index.json").read_text())


def build_index(tasks_root: str | Path) -> dict:
    """The index of an extracted `benchmark_tasks` folder (how `bigbench_index.json` was made)."""
    root, index = Path(tasks_root), {}

    def entry(path: Path) -> dict:
        spec = json.loads(path.read_text(encoding="utf-8"))
        return {"file": str(path.relative_to(root)), "n_examples": len(spec["examples"]),
                "multiple_choice": is_multiple_choice(spec), "preferred_score": spec.get("preferred_score")}

    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        main = task_dir / ALTERNATE_FILES.get(task_dir.name, "task.json")
        if not main.exists():
            continue  # a programmatic task: no JSON examples to convert
        subtasks = sorted(p.name for p in task_dir.iterdir() if (p / "task.json").exists())
        if subtasks:
            index[task_dir.name] = {"file": str(main.relative_to(root)), "subtasks":
                                    [f"{task_dir.name}.{s}" for s in subtasks]}
            for sub in subtasks:
                index[f"{task_dir.name}.{sub}"] = entry(task_dir / sub / "task.json")
        else:
            index[task_dir.name] = entry(main)
    return index


def is_multiple_choice(spec: dict) -> bool:
    """Scored by choice log-likelihoods: every example has `target_scores` and the preferred score is not a
    generative one (tasks with both fields are scored as BIG-bench prefers)."""
    has_choices = all("target_scores" in e for e in spec["examples"])
    return has_choices and spec.get("preferred_score") not in ("exact_str_match", "bleu", "rouge", "rougeLsum")


def expand(name: str) -> list[str]:
    """A configured BIG-bench name -> the (sub)task names it stands for."""
    return task_index()[name].get("subtasks", [name])


def parent_of(name: str) -> str:
    return name.split(".", 1)[0]


# --- obtaining the archive ----------------------------------------------------------------------------------


def fetch_archive(dest: str | Path, *, url: str, sha256: str) -> Path:
    """Download the archive to `dest` (streamed to a temporary file, renamed only when its sha256 matches).

    Fails clearly without network (naming where to put a copy by hand) and on a checksum mismatch (the bad
    download is removed, nothing else is touched).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise BigBenchError(
            f"could not download the BIG-bench archive from {url}: {err}. This needs network access to that "
            f"address; on an offline machine, copy bigbench-{VERSION}.tar.gz (sha256 {sha256}) to {dest} "
            f"and rerun.") from err
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise BigBenchError(
            f"the BIG-bench archive from {url} has sha256 {digest.hexdigest()}, expected {sha256}: the download "
            f"is corrupt or the file changed. It was deleted; rerun to download it again, or set "
            f"bigbench.archive_sha256 if you deliberately use another archive.")
    partial.replace(dest)
    return dest


def extract_task(archive: str | Path, task: str, out_dir: str | Path, *, sha256: str) -> Path:
    """Extract one top-level task's JSON files (its own and its subtasks') from the archive into `out_dir`."""
    archive, out_dir = Path(archive), Path(out_dir)
    if sha256_file(archive) != sha256:
        raise BigBenchError(f"{archive} does not have the pinned sha256 {sha256}; delete it and rerun to "
                            f"download it again.")
    prefix = f"{TASKS_PREFIX}{task}/"
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    found = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".json"):
                target = tmp / member.name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                found += 1
    if not found:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BigBenchError(f"task {task!r} is not in {archive} (no {prefix}*.json)")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return out_dir


# --- conversion ---------------------------------------------------------------------------------------------


def format_example(example: dict, spec: dict, seed: int, append_choices_to_input: bool | None = None) -> dict:
    """One BIG-bench example -> a document: `question` is the input as BIG-bench formats it (input prefix,
    choices appended in BIG-bench's seeded permutation, output prefix); `answer` the first target, `answers`
    all valid targets; multiple choice adds `choices`, `choice_scores` and the `gold` index."""
    fmt = {**FORMAT_DEFAULTS, **{k: spec[k] for k in FORMAT_DEFAULTS if k in spec}}
    if append_choices_to_input is not None:  # the study's override of the task's own setting
        fmt["append_choices_to_input"] = append_choices_to_input
    text, doc = example["input"], {}
    if "target_scores" in example:
        scores = example["target_scores"]
        choices = list(scores)
        if fmt["append_choices_to_input"]:
            permuted = np.random.RandomState(seed=seed).permutation(sorted(choices))
            text += fmt["choice_prefix"] + fmt["choice_prefix"].join(permuted)
        best = max(scores.values())
        doc.update(choices=choices, choice_scores=[float(scores[c]) for c in choices],
                   gold=next(i for i, c in enumerate(choices) if scores[c] == best))
    targets = example.get("target", doc.get("choices", [None])[doc.get("gold", 0)])
    targets = targets if isinstance(targets, list) else [targets]
    if not targets or not all(isinstance(t, str) for t in targets):
        raise BigBenchError(f"example {example['input'][:60]!r}: 'target' must be a string or a list of strings")
    doc.update(question=fmt["example_input_prefix"] + text + fmt["example_output_prefix"],
               answer=targets[0], answers=targets)
    return doc


def split_sizes(total: int, n_eval: int, n_fewshot_pool: int) -> tuple[int, int]:
    """(eval, pool) sizes: the pool never takes more than half of a small task, evaluation the rest."""
    pool = min(n_fewshot_pool, total // 2)
    return min(n_eval, total - pool), pool


def write_bigbench_task(name: str, source_dir: str | Path, out_dir: str | Path, *, n_eval: int,
                        n_fewshot_pool: int, seed: int, random_baseline: float | None = None,
                        append_choices_to_input: bool | None = None) -> dict:
    """Convert one (sub)task from an extracted task folder into test/fewshot JSONL and task.json.

    Documents are shuffled with `seed` and split into a few-shot pool and an evaluation set (disjoint); their
    order and the choice permutations are deterministic. `append_choices_to_input: false` renders generative
    items without their `choice:` lines (GPT-3's arithmetic: no candidates to copy). Returns the task metadata.
    """
    entry = task_index()[name]
    relative = Path(entry["file"]).relative_to(parent_of(name))
    path = Path(source_dir) / relative
    refetch = f"If the file was damaged after extraction, delete {source_dir} and rerun to extract it again."
    try:
        spec = read_json(path)  # a syntax error or non-UTF-8 bytes name the line
    except (OSError, DataError) as err:
        raise BigBenchError(f"cannot read BIG-bench task {name!r}: {err} {refetch}") from None
    examples = spec.get("examples") or []
    if not examples:
        raise BigBenchError(f"BIG-bench task {name!r} ({path}) has no examples. {refetch}")
    docs = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict) or "input" not in example or not {"target", "target_scores"} & set(example):
            have = ", ".join(sorted(example)) if isinstance(example, dict) else type(example).__name__
            raise BigBenchError(f"{path}: examples[{i}] needs 'input' and 'target' (or 'target_scores' for multiple "
                                f"choice); it has {have or 'nothing'}. {refetch}")
        try:
            docs.append(format_example(example, spec, seed=seed + i, append_choices_to_input=append_choices_to_input))
        except BigBenchError as err:
            raise BigBenchError(f"{path}: examples[{i}]: {err}") from None
    multiple_choice = is_multiple_choice(spec)
    rng = random.Random(seed)
    rng.shuffle(docs)
    size, pool = split_sizes(len(docs), n_eval, n_fewshot_pool)
    preferred = spec.get("preferred_score")
    stop = spec.get("stop_string")
    regex = spec.get("output_regex") or (None if stop else DEFAULT_OUTPUT_REGEX)
    longest = max(len(t) for d in docs for t in d["answers"])
    meta = {
        "task": name,
        "kind": "bigbench",
        "source": {"archive": f"bigbench-{VERSION}.tar.gz", "file": str(relative),
                   "sha256": sha256_file(path), "n_examples": len(docs), "shipped": is_shipped(name)},
        "multiple_choice": multiple_choice,
        "bigbench_preferred_score": preferred,
        "metric": PAPER_METRICS.get(preferred, "mc_grade" if multiple_choice else "exact_match"),
        # chance: free-form answers 0 unless overridden; multiple choice (None) a uniform guess's expected grade
        # per document, computed with its choices at evaluation
        "random_baseline": random_baseline if random_baseline is not None or multiple_choice else 0.0,
        "prompt": {
            "query": "{question}",
            "delimiter": "",  # the output prefix is already the end of the question
            "separator": spec.get("few_shot_example_separator", FORMAT_DEFAULTS["few_shot_example_separator"]),
            "prefix": spec.get("task_prefix", ""),
            "stop": [stop or "\n"],
            "answer_regex": regex,
            # room for the longest gold answer (BIG-bench generates up to a length, then cuts at stop/regex)
            "max_gen_toks": min(256, 2 * longest + 8),
        },
        "n_eval": size,
        "n_fewshot_pool": pool,
        "seed": seed,
    }
    return write_task_files(out_dir, {"test": docs[:size], "fewshot": docs[size:size + pool]}, meta)


if __name__ == "__main__":  # rebuild the shipped files: python -m emergence.tasks.bigbench ship ARCHIVE SUBTASK...
    if len(sys.argv) < 4 or sys.argv[1] != "ship":
        sys.exit("usage: python -m emergence.tasks.bigbench ship ARCHIVE SUBTASK...")
    ship(sys.argv[2], sys.argv[3:], SHIPPED_DIR, sha256=shipped.provenance()["archive"]["sha256"])
