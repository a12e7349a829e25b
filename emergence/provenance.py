"""Provenance: the manifest of a study version, the versions list, and the `latest` pointer."""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from emergence.io import atomic_path, read_json, write_json
from emergence.machine import machine
from emergence.models.modeldir import checkpoint_dirs, read_metadata

PACKAGES = ("torch", "transformers", "tokenizers", "lm_eval", "snakemake", "pandas", "pyarrow", "numpy", "scipy",
            "matplotlib", "datasets")
VERSIONS_FIELDS = ["version", "created", "config_hash", "code_hash", "git_commit"]


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(basedir: str | Path) -> str | None:
    """The checkout's commit, with '-dirty' when tracked files differ from it; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=basedir, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=basedir,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_manifest(path: str | Path, config_path: str | Path, *, config: dict, version: str, code_hash: str,
                   code_versions: dict, basedir: str | Path, model_roots: list, task_dirs: list,
                   published: dict | None = None) -> dict:
    """Record what produced a version: config, code (each stage's code version), packages, the machine, every
    model's metadata (with the machine that trained it), every task's checksums, the sha256 of every published
    family's result files.

    The effective config is also written as YAML: `--configfile <version>/config.yaml` reproduces the version.
    """
    models = {}
    for root in model_roots:
        for model_dir in checkpoint_dirs(root):
            meta = read_metadata(model_dir)
            models[meta["model_id"]] = meta
    manifest = {
        "study": config["study"],
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "code_hash": code_hash,
        "code_versions": code_versions,
        "git_commit": git_commit(basedir),
        "packages": package_versions(),
        "machine": machine(),
        "models": models,
        "tasks": {meta["task"]: meta for meta in (read_json(Path(d) / "task.json") for d in task_dirs)},
        "published": published or {},
    }
    write_json(path, manifest)
    with atomic_path(config_path) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    return manifest


def build_report(snakefile: str | Path, workdir: str | Path, version_dir: str | Path) -> None:
    """Build the self-contained HTML report of a finished version into `<version>/report.html`, once.

    Runs `snakemake --report` with the version's own effective config, so the report lists exactly its outputs.
    """
    version_dir = Path(version_dir)
    report = version_dir / "report.html"
    if report.exists() or not (version_dir / "config.yaml").exists():
        return
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
                           str(workdir), "--configfile", str(version_dir / "config.yaml"), "--report", str(report),
                           "--nolock"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {report} failed (the results are complete; rerun to retry the report):\n"
                           f"{proc.stderr[-3000:]}")


def publish(study_dir: str | Path, version: str) -> None:
    """Point `<study>/latest` at `version` (atomically) and list it in `<study>/versions.csv` once."""
    study_dir = Path(study_dir)
    manifest_path = study_dir / version / "manifest.json"
    if not manifest_path.exists():
        return
    manifest = read_json(manifest_path)
    versions = study_dir / "versions.csv"
    known = set()
    if versions.exists():
        with open(versions, newline="") as fh:
            known = {row["version"] for row in csv.DictReader(fh)}
    if version not in known:
        new_file = not versions.exists()
        with open(versions, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=VERSIONS_FIELDS)
            if new_file:
                writer.writeheader()
            writer.writerow({"version": version, "created": manifest["created"],
                             "config_hash": version.split("-")[0], "code_hash": manifest["code_hash"],
                             "git_commit": manifest["git_commit"]})
    link, tmp = study_dir / "latest", study_dir / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, link)
