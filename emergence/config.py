"""Config validation: the JSON schema first, then the checks a schema cannot express.

Every error names the offending key or value and says what would be valid, before any work starts.
"""

from __future__ import annotations

import copy
import difflib
import math
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from emergence import layout
from emergence.ladder import data
from emergence.models.families import suites
from emergence.published.cells import family_problems as published_family_problems
from emergence.strategies import KSHOT, load_strategy
from emergence.tasks import bigbench, catalog
from emergence.tasks.views import P_TRUE_QUERY, strategy_fields

SCHEMA_PATH = Path(str(resources.files("emergence") / "schemas" / "config.schema.yaml"))


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the config."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _suggest(value: str, choices) -> str:
    """' Did you mean ...?' for the closest valid choices (case-insensitive), or ''."""
    by_lower = {str(c).lower(): c for c in choices}
    close = [by_lower[c] for c in difflib.get_close_matches(str(value).lower(), list(by_lower), n=3, cutoff=0.75)]
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_at(schema: dict, path) -> dict:
    """The sub-schema describing the value at `path` (enough for this project's schema shapes)."""
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part) or node.get("additionalProperties") or {}
    return node


def _friendly(error: jsonschema.ValidationError, schema: dict) -> str:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(schema, error.absolute_path).get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return "; ".join(
            f"unknown config key '{where + '.' if error.absolute_path else ''}{key}': valid keys here are "
            f"{', '.join(allowed)}.{_suggest(key, allowed)}"
            for key in extra
        )
    if error.validator == "enum":
        return (f"config {where} = {error.instance!r} is not valid; choose one of "
                f"{', '.join(map(str, error.validator_value))}.{_suggest(error.instance, error.validator_value)}")
    if error.validator == "type":
        return f"config {where} must be of type {error.validator_value}, got {error.instance!r}."
    if error.validator == "required":
        return f"config {where} is missing a required key: {error.message.split(' ')[0]}."
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "multipleOf"):
        return f"config {where} = {error.instance!r} is out of range: {error.message}."
    if error.validator == "minItems":
        return f"config {where} is empty; give at least {error.validator_value} item(s)."
    if error.validator == "uniqueItems":
        return f"config {where} lists an item twice: {error.instance!r}."
    if error.validator == "oneOf":
        choices = " or ".join(map(_describe, error.validator_value))
        return f"config {where} = {error.instance!r} is not valid; give {choices}."
    if error.validator == "pattern":
        return (f"config {where} = {error.instance!r} is not allowed: use letters, digits, '_' (and '.', '-' in "
                f"a study name), starting with a letter or digit.")
    return f"config {where}: {error.message}"


def _describe(schema: dict) -> str:
    """`{type: integer, minimum: 1}` -> 'an integer >= 1'; `{const: auto}` -> "'auto'"; an enum -> its choices."""
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return f"one of {', '.join(map(str, schema['enum']))}"
    if schema.get("type") == "object" and "enum" in schema.get("propertyNames", {}):
        names = schema["propertyNames"]["enum"]
        return f"a mapping of {', '.join(names)} to {_describe(schema.get('additionalProperties', {}))}"
    kind = {"integer": "an integer", "number": "a number", "string": "a string"}.get(schema.get("type"), "a value")
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
              if key in schema]
    return " ".join([kind, *bounds])


def _non_finite(value, path=()) -> list[str]:
    """NaN and infinity pass the schema's bounds (every comparison with NaN is false); name them instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"config {_where(path)} = {value} is not a finite number; give a number."]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [problem for key, item in items for problem in _non_finite(item, (*path, key))]


def _with_defaults(validator_class):
    """A validator that fills in schema defaults while validating (as Snakemake's `validate` does)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def check_config(config: dict) -> dict:
    """Validate `config`; return a copy with defaults filled in, or raise ConfigError listing every problem."""
    schema = load_schema()
    filled = copy.deepcopy(config)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    problems = [_friendly(e, schema) for e in sorted(validator.iter_errors(filled), key=lambda e: list(e.path))]
    problems += _non_finite(filled)
    if not problems:
        problems = _semantic_problems(filled)
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))
    return filled


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    if config["study"] in layout.SHARED:
        problems.append(f"study {config['study']!r} would share {layout.study_dir(config['study'])}/ with the "
                        f"pipeline's own folder; choose another name (reserved: {', '.join(layout.SHARED)}).")
    names = [m["name"] for m in config["models"]]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"model family {name!r} is defined twice in models; give each family a unique name.")
    if not config["tasks"] and any(family["source"] != "published" for family in config["models"]):
        problems.append("tasks is empty; give at least one task (only a study whose families are all source: "
                        "published, which bring their tasks, may leave it empty).")
    for i, family in enumerate(config["models"]):
        if family["source"] == "published":
            problems += published_family_problems(i, family, config["strategies"])
            continue
        if family["source"] != "ladder":
            problems += _external_family_problems(i, family)
            continue
        if "widths" not in family:
            problems.append(f"models[{i}] ({family['name']}): a ladder needs 'widths', e.g. [16, 32, 64].")
        if not any(w > 0 for w in family["operations"].values()):
            problems.append(f"models[{i}].operations: every weight is 0; give at least one operation a weight.")
        formats = data.format_shares(family["example_format"])
        if not any(w > 0 for w in formats.values()):
            problems.append(f"models[{i}].example_format: every share is 0; give at least one format a share.")
        for op, weight in family["operations"].items():
            if op in data.OPERATIONS and formats.get("scratchpad", 0) > 0 and weight > 0 \
                    and data.OPERATIONS[op].scratchpad(1, 1) is None:
                problems.append(f"models[{i}].operations: {op!r} has no scratchpad format; give it weight 0 or "
                                f"use example_format: plain.")
            if op not in data.OPERATIONS:
                problems.append(f"models[{i}].operations: unknown operation {op!r}; valid: "
                                f"{', '.join(data.OPERATIONS)}.{_suggest(op, data.OPERATIONS)}")
    families = {m["name"]: m for m in config["models"]}
    for i, family in enumerate(config["models"]):
        for name in family.get("strategies") or []:
            if name not in config["strategies"]:
                problems.append(f"models[{i}].strategies names {name!r}, which is not in strategies "
                                f"({', '.join(config['strategies'])}).")
    for i, comparison in enumerate(config["comparisons"]):
        for side in ("with", "without"):
            selector = comparison[side]
            if selector["strategy"] not in config["strategies"]:
                problems.append(f"comparisons[{i}].{side}.strategy {selector['strategy']!r} is not in strategies "
                                f"({', '.join(config['strategies'])}).")
            if "family" in selector and selector["family"] not in families:
                problems.append(f"comparisons[{i}].{side}.family {selector['family']!r} is not a model family "
                                f"({', '.join(families)}).")
    kinds = {}
    for task in config["tasks"]:
        try:
            kinds[task] = catalog.kind_of(task, config["lm_eval_task_dirs"])
        except catalog.UnknownTask as err:
            problems.append(str(err))
    for task, override in config["task_overrides"].items():
        if "append_choices_to_input" in override and bigbench.parent_of(task) not in bigbench.task_index():
            problems.append(f"task_overrides.{task}.append_choices_to_input applies to BIG-bench tasks only; "
                            f"remove it from {task!r}.")
        # an override of a known task this study does not run is harmless (a preset overlaying config.yaml
        # keeps its overrides); a name no catalog knows is a typo
        try:
            catalog.kind_of(task, config["lm_eval_task_dirs"])
        except catalog.UnknownTask as err:
            problems.append(f"task_overrides: {err}")
    for name in config["strategies"]:
        try:
            strategy = load_strategy(name, config["strategy_dirs"])
        except ValueError as err:
            problems.append(str(err))
            continue
        problems += _strategy_problems(config, strategy, kinds)
    return problems


def _external_family_problems(i: int, family: dict) -> list[str]:
    """A hub or local family names real models: a suite's sizes, members with a repo (hf) or a path (local)."""
    where, source = f"models[{i}] ({family['name']})", family["source"]
    problems = []
    if source == "local" and (family.get("suite") or family.get("revisions")):
        problems.append(f"{where}: 'suite' and 'revisions' are for source: hf; a local family lists members with "
                        f"a path.")
    if not family.get("suite") and not family.get("members"):
        problems.append(f"{where}: source: {source} needs "
                        + ("a suite (" + ", ".join(suites()) + ") with sizes, or " if source == "hf" else "")
                        + f"members, e.g. [{{{'repo: org/model' if source == 'hf' else 'path: /models/m1'}}}].")
    if suite := family.get("suite"):
        valid = suites()[suite]["sizes"]
        for size in family.get("sizes") or []:
            if size not in valid:
                problems.append(f"{where}.sizes: {size!r} is not a {suite} size; valid: {', '.join(valid)}."
                                f"{_suggest(size, valid)}")
    key = "repo" if source == "hf" else "path"
    for j, member in enumerate(family.get("members") or []):
        if key not in member or ("path" if source == "hf" else "repo") in member:
            problems.append(f"{where}.members[{j}]: a source: {source} member names its model with '{key}' only.")
        elif source == "local" and not Path(member["path"]).expanduser().is_dir():
            problems.append(f"{where}.members[{j}].path: {member['path']!r} is not a directory; give the folder "
                            f"holding config.json, the weights and the tokenizer.")
        if source == "local" and "revisions" in member:
            problems.append(f"{where}.members[{j}]: 'revisions' is for hub models; a local member is one model.")
    return problems


def _strategy_problems(config: dict, strategy, kinds: dict) -> list[str]:
    """Can `strategy` run on every configured task (fields, few-shot pool, ladder context)?"""
    problems, name = [], strategy.name
    for task, kind in kinds.items():
        if kind == "lm_eval":
            if not KSHOT.match(name):
                problems.append(f"strategy {name!r} cannot run on lm-eval task {task!r}: lm-eval's own tasks keep "
                                f"their prompts, so only plain '<k>shot' strategies apply to them.")
            continue
        for sub in catalog.expand(task, kind):
            fields = task_fields(sub, kind)
            if missing := [f for f in strategy_fields(strategy) if f not in fields]:
                problems.append(f"strategy {name!r} needs the document field {missing[0]!r}, which task {sub!r} "
                                f"does not have (fields: {', '.join(fields)}).")
                continue
            pool = task_pool(config, sub, kind)
            if strategy.num_fewshot > pool:
                problems.append(f"strategy {name!r} needs {strategy.num_fewshot} exemplars but task {sub!r} has a "
                                f"few-shot pool of {pool}; raise task_defaults.n_fewshot_pool (or the task's "
                                f"task_overrides entry) or lower k.")
        if kind != "arithmetic":
            continue
        for i, family in enumerate(config["models"]):
            if family["source"] != "ladder" or name not in (family.get("strategies") or config["strategies"]):
                continue
            need = ladder_context_tokens(task, strategy)
            if need > family["n_ctx"]:
                problems.append(f"strategy {name!r} on task {task!r} needs up to {need} tokens of context (prompt "
                                f"and generation), more than models[{i}] ({family['name']}) n_ctx="
                                f"{family['n_ctx']}; raise n_ctx or leave the strategy out of "
                                f"models[{i}].strategies.")
    return problems


def task_pool(config: dict, task: str, kind: str) -> int:
    """The few-shot pool a task will have: as configured, or what a small BIG-bench task can spare."""
    settings = task_settings(config, task)
    if kind == "bigbench":
        return bigbench.split_sizes(bigbench.task_index()[task]["n_examples"], settings["n_eval"],
                                    settings["n_fewshot_pool"])[1]
    return settings["n_fewshot_pool"]


def task_fields(task: str, kind: str = "arithmetic") -> list[str]:
    """The document fields a task provides (what strategies may build completions from)."""
    if kind == "bigbench":
        choices = ["choice_scores", "choices", "gold"] if bigbench.task_index()[task]["multiple_choice"] else []
        return ["answer", "answers", *choices, "question"]
    op = data.OPERATIONS[task]
    a = op.operand_range()[0]
    optional = {"scratchpad": op.scratchpad(a, a), "rationale": op.rationale(a, a)}
    return ["answer", "proposed", "proposed_correct", "question",
            *(name for name, value in optional.items() if value is not None)]


def ladder_context_tokens(task: str, strategy) -> int:
    """The longest prompt plus generation of `strategy` on an arithmetic task, in ladder (character) tokens:
    instruction, k exemplars, the query and max_gen_toks (lm-eval silently cuts prompts that do not fit)."""
    op = data.OPERATIONS[task]
    top = op.operand_range()[1] - 1
    question = op.question(top, top)
    if strategy.kind == "p_true":
        query = len(P_TRUE_QUERY.format(question=question, proposed=op.apply(top, top) + 9))
        shot, generated = query + len(" False"), len(" False")
    else:
        query = len(data.format_query(question))
        field = {"answer": str(op.apply(top, top)), "scratchpad": op.scratchpad(top, top),
                 "rationale": op.rationale(top, top)}[strategy.completion]
        shot, generated = query + len(data.format_answer(field)), strategy.max_gen_toks
    separator = len(data.EXAMPLE_SEPARATOR)
    instruction = len(strategy.instruction) + separator if strategy.instruction else 0
    return instruction + strategy.num_fewshot * (shot + separator) + query + generated


def task_settings(config: dict, task: str) -> dict:
    """The settings of one task: task_defaults, overlaid by its parent's task_overrides entry (a BIG-bench
    subtask's parent), then by its own."""
    overrides = config["task_overrides"]
    return {**config["task_defaults"], **overrides.get(bigbench.parent_of(task), {}), **overrides.get(task, {})}
