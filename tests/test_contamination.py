"""Nothing the default study (or the few-shot preset) evaluates was trained on: every (a, op, b) of every
evaluated BIG-bench item (its query and every in-context line or exemplar) is absent from every training row of
every ladder run."""

import functools
import json
from pathlib import Path

import numpy as np
import yaml

from emergence.config import check_config
from emergence.io import sha256_file
from emergence.ladder import data
from emergence.ladder.train import TrainSettings, packed_rows
from emergence.study import plan_study
from emergence.tasks import bigbench
from emergence.tasks.catalog import write_task

REPO = Path(__file__).resolve().parents[1]
ENCODE = lambda text: [ord(ch) for ch in text]  # noqa: E731  one positive id per character, as the tokenizer


@functools.cache  # both tests read the default's plan
def study_plan(preset: str | None = None):
    """The plan of config.yaml, or of a preset over it (as `--configfile` overlays top-level keys)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if preset:
        config.update(yaml.safe_load((REPO / preset).read_text()))
    return plan_study(check_config(config), REPO)


def evaluated_problems(plan, tmp_path) -> set:
    """Every problem in the task folders the plan evaluates (test items and the few-shot pool)."""
    problems = set()
    for key, spec in plan.tasks.items():
        assert spec["kind"] == "bigbench" and bigbench.is_shipped(spec["task"]), "the default evaluates shipped items"
        out = tmp_path / key
        write_task(spec, out, source_dir=bigbench.shipped_source(spec["task"]))
        for split in ("test", "fewshot"):
            for line in (out / f"{split}.jsonl").read_text().splitlines():
                problems |= data.problems_in(json.loads(line)["question"])
    return problems


def test_no_evaluated_problem_is_in_any_training_row(tmp_path):
    plans = [study_plan(), study_plan("presets/fewshot.yaml")]
    evaluated = set().union(*(evaluated_problems(plan, tmp_path / plan.study) for plan in plans))
    assert len(evaluated) == len(plans[0].tasks) * 300 and evaluated <= data.benchmark_problems()
    # Rows depend on the seed and the corpus settings, not the width or the family, and a shorter run's rows are a
    # prefix of a longer one's: generate each distinct stream once, as long as its longest run.
    streams = {}
    for run in (run for plan in plans for run in plan.runs.values()):
        settings = TrainSettings.from_config(run["settings"])
        key = (settings.seed, settings.operations, settings.example_format, settings.n_ctx, settings.batch_rows)
        if key not in streams or settings.total_steps > streams[key].total_steps:
            streams[key] = settings
    for settings in streams.values():
        ids, labels, _ = packed_rows(settings, ENCODE, settings.total_steps * settings.batch_rows, held_out=False,
                                     seed=settings.seed)
        trained = set()
        for row in ids:
            trained |= data.problems_in("".join(chr(i) for i in row if i))
        assert len(trained) > 0.9 * trainable_problems(settings.operations)  # the parser does read the rows
        assert not trained & evaluated, sorted(trained & evaluated)[:5]


def trainable_problems(operations) -> int:
    """How many distinct problems the corpus's operations may pose (a long run draws nearly all of them)."""
    count = 0
    for name, _ in operations:
        op = data.OPERATIONS[name]
        low, high = op.operand_range()
        count += sum(data.trainable(op.symbol, a, b, name) for a in range(low, high) for b in range(low, high))
    return count


def test_training_rows_use_the_benchmark_format():
    """A training row reads like a k-shot prompt of the evaluated tasks, with every answer supervised, all in one
    of the corpus's conventions (plain, or the tenfold one the question does not state)."""
    settings = TrainSettings.from_config(next(iter(study_plan().runs.values()))["settings"])
    assert dict(settings.example_format) == {"plain": 1.0, "tenfold": 5.0}
    ids, labels, _ = packed_rows(settings, ENCODE, 16, held_out=False, seed=0)
    seen = set()
    for row_ids, row_labels in zip(ids, labels):
        text = "".join(chr(i) for i in row_ids if i)
        supervised = "".join(chr(i) for i in row_labels if i != -100)
        examples = text.split("\n\n")
        assert len(examples) > 2 and text.startswith("\nQ: What is ")
        answers = [example.rsplit("\nA: ", 1)[1].strip() for example in examples]
        assert supervised == "".join(" " + answer + "\n" for answer in answers)
        conventions = set()
        for example, answer in zip(examples, answers):
            ((symbol, a, b),) = data.problems_in(example)
            op = next(op for op in data.OPERATIONS.values() if op.symbol == symbol and len(str(a)) == op.digits)
            result = op.apply(a, b)
            assert answer in (str(result), str(10 * result))
            if result:  # 0 reads the same in both
                conventions.add("plain" if answer == str(result) else "tenfold")
        assert len(conventions) == 1  # a row is one document, in one convention
        seen |= conventions
    assert seen == {"plain", "tenfold"}


def test_modified_arithmetic_documents_avoid_every_benchmark_line():
    rng = np.random.default_rng(0)
    documents = data.modified_documents({"addition_3digit": 1.0}, rng, ENCODE)
    benchmark = data.benchmark_problems()
    assert any(symbol == "+" and max(a, b) < 1000 for symbol, a, b in benchmark)  # the lines are in the set
    modifiers = set()
    for _ in range(300):
        ids, spans = next(documents)
        text = "".join(map(chr, ids))
        assert text.startswith(data.MODIFIED_HEADER) and len(spans) == 6
        lines = text[len(data.MODIFIED_HEADER):].splitlines()
        offsets = {int(line.split(" -> ")[1]) - sum(map(int, line.split(" -> ")[0].split(" + "))) for line in lines}
        assert len(offsets) == 1  # one hidden modification per document
        modifiers |= offsets
        assert not data.problems_in(text) & benchmark
    assert modifiers == {0, 1}


def test_shipped_files_are_the_pinned_archive_files():
    provenance = json.loads((bigbench.SHIPPED_DIR / "PROVENANCE.json").read_text())
    assert provenance["archive"]["sha256"] == yaml.safe_load((REPO / "emergence/schemas/config.schema.yaml")
                                                             .read_text())["properties"]["bigbench"]["properties"][
        "archive_sha256"]["default"]
    for relative, entry in provenance["files"].items():
        assert sha256_file(bigbench.SHIPPED_DIR / relative) == entry["sha256"], relative
    assert (bigbench.SHIPPED_DIR / "LICENSE").read_text().count("Apache License") >= 1
