"""A model directory as the pipeline keeps it: the Hugging Face files plus `model.json`, its metadata with the
sha256 of every file. One place for the metadata's schema, staging under a temporary name and renaming, placing
files (hard link, else copy; never a symlink), verifying the recorded checksums, and reading a run's checkpoints.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emergence.io import read_json, sha256_file, write_json
from emergence.ladder.model import training_flops
from emergence.models.checks import ChecksumError

METADATA_FILE = "model.json"
# The scale metadata aggregation reads from every model (None where unknown).
SCALE_KEYS = ("family", "run", "params", "nonembedding_params", "train_tokens", "train_flops", "checkpoint_step",
              "final_checkpoint", "seed", "heldout_loss")
REQUIRED_KEYS = ("model_id", "source", *SCALE_KEYS, "files")


def model_metadata(*, model_id: str, family: str, source: str, summary: dict, files: dict[str, str],
                   run: str | None = None, params: int | None = None, nonembedding_params: int | None = None,
                   train_tokens: int | None = None, tokens_per_step: int | None = None,
                   checkpoint_step: int | None = None, final_checkpoint: bool | None = None, seed: int | None = None,
                   heldout_loss: float | None = None, train_flops: float | None = None, **extra) -> dict:
    """The `model.json` of a hub or local model (a ladder checkpoint writes its own): the ladder's keys (those
    aggregation reads, `SCALE_KEYS`), None where unknown.

    Parameter counts default to the weight headers' (non-embedding leaves out token/position embeddings and an
    untied output head). train_tokens defaults to checkpoint_step x tokens_per_step; train_flops to
    6 x non-embedding parameters x train_tokens, as for the ladder (`training_flops`), so both share one axis.
    """
    params = params if params is not None else summary["params"]
    nonembedding_params = nonembedding_params if nonembedding_params is not None else summary["nonembedding_params"]
    if train_tokens is None and checkpoint_step is not None and tokens_per_step is not None:
        train_tokens = checkpoint_step * tokens_per_step
    if train_flops is None and train_tokens is not None:
        train_flops = training_flops(nonembedding_params, train_tokens)
    return {
        "model_id": model_id,
        "family": family,
        "source": source,
        "run": run,
        "architecture": summary["architecture"],
        "params": params,
        "nonembedding_params": nonembedding_params,
        "embedding_rows": summary["embedding_rows"],
        "tokenizer_size": summary["tokenizer_size"],
        "weights_format": summary["format"],
        "train_tokens": train_tokens,
        "train_flops": train_flops,
        "checkpoint_step": checkpoint_step,
        "final_checkpoint": final_checkpoint,
        "seed": seed,
        "heldout_loss": heldout_loss,
        **extra,
        "files": files,
    }


def read_metadata(model_dir: str | Path) -> dict:
    return read_json(Path(model_dir) / METADATA_FILE)


def checkpoint_dirs(model_root: str | Path) -> list[Path]:
    """The model directories under a run directory (each holds `model.json`), in training order."""
    root = Path(model_root)
    if (root / METADATA_FILE).exists():
        return [root]
    dirs = [d for d in root.iterdir() if (d / METADATA_FILE).exists()]
    if not dirs:
        raise FileNotFoundError(f"no model directory (with {METADATA_FILE}) under {root}")
    return sorted(dirs, key=lambda d: read_metadata(d).get("checkpoint_step") or 0)


def file_checksums(model_dir: Path) -> dict[str, str]:
    """{file name: sha256} of every file in a (staged) model directory."""
    return {f.name: sha256_file(f) for f in sorted(model_dir.iterdir()) if f.is_file() and f.name != METADATA_FILE}


@contextmanager
def staged(out_dir: str | Path) -> Iterator[Path]:
    """An empty `<out_dir>.partial/` to fill; removed if the block fails. `commit` then moves it onto `out_dir`."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def commit(tmp: Path, out_dir: str | Path, meta: dict) -> dict:
    """Write `model.json` into the finished staging directory and rename it onto `out_dir` (readers never see a
    half-written model); returns `meta`."""
    if missing := [key for key in REQUIRED_KEYS if key not in meta]:
        raise ValueError(f"model metadata of {out_dir} lacks {', '.join(missing)}")
    write_json(tmp / METADATA_FILE, meta)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return meta


def place(src: str | Path, dest: Path, *, hardlink: bool = True) -> None:
    """Put `src` (a symlink is followed to its target) at `dest` as a real file: a hard link where wanted and the
    file system allows it, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    target = os.path.realpath(src)
    if hardlink:
        try:
            os.link(target, dest)
            return
        except OSError:
            pass
    shutil.copyfile(target, dest)


def verify(model_dir: str | Path, fix: str) -> dict:
    """Check every file `model.json` lists against its recorded sha256; return the metadata, or raise
    ChecksumError naming the first bad file and `fix`."""
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    for name, expected in sorted(meta.get("files", {}).items()):
        path = model_dir / name
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != expected:
            raise ChecksumError(f"{path}: sha256 {actual}, but {model_dir / METADATA_FILE} records {expected}: the "
                                f"model directory was changed or damaged after it was written. {fix}")
    return meta
