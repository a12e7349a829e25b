"""A model directory on disk (anything saved with `save_pretrained`) as a pipeline model.

The source is validated (`checks.validate_model_dir`: config, weights, readable weight headers, tokenizer that
fits the embedding), then the files a model needs are **copied** into the output directory and sha256'd into
`model.json`. Copies, not symlinks: a finished result must not change when someone re-saves or deletes the
source (save_pretrained rewrites files in place, which would also change a hard link). `link="hardlink"` saves
the disk space for large models when the source is known to be read-only.

A source that has its own `model.json` (a ladder checkpoint, an earlier pipeline output) is checked against
the sha256s it records, and its training metadata (params, train_tokens, checkpoint_step, ...) fills in what
the caller does not give.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from emergence.io import read_json, sha256_file
from emergence.models.checks import (
    ChecksumError,
    ModelDirError,
    index_shards,
    select_files,
    validate_model_dir,
)
from emergence.models.hub import model_metadata, write_model_dir

log = logging.getLogger(__name__)

_CARRIED = ("run", "params", "nonembedding_params", "train_tokens", "train_flops", "checkpoint_step",
            "final_checkpoint", "seed", "heldout_loss")


def link_local_model(path: str | Path, out_dir: str | Path, *, family: str, model_id: str,
                     link: str = "copy", **metadata) -> dict:
    """Validate the model directory `path`, copy its model files into `out_dir`, write model.json; return it.

    `metadata`: run, params, nonembedding_params, train_tokens, tokens_per_step, checkpoint_step,
    final_checkpoint, seed, heldout_loss, train_flops (see `hub.model_metadata`). Raises ModelDirError or
    ChecksumError naming the file and the fix.
    """
    if link not in ("copy", "hardlink"):
        raise ValueError(f"link must be 'copy' or 'hardlink', got {link!r}")
    src = Path(path).expanduser().resolve()
    out_dir = Path(out_dir)
    summary = validate_model_dir(src)
    own = {}
    if (src / "model.json").is_file():
        own = read_json(src / "model.json")
        for name, expected in sorted(own.get("files", {}).items()):
            actual = sha256_file(src / name) if (src / name).is_file() else "missing"
            if actual != expected:
                raise ChecksumError(
                    f"{src / name}: sha256 {actual}, but {src / 'model.json'} records {expected}: the model "
                    "directory was changed or damaged after it was written. Restore it, or delete its model.json "
                    "if the change was deliberate."
                )
    names = {p.name for p in src.iterdir() if p.is_file()}
    wanted, index = select_files(names)
    if index:
        wanted = sorted(set(wanted) | index_shards(src / index))

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = {}
        for name in wanted:
            dest = tmp / name
            if link == "hardlink":
                try:
                    os.link(src / name, dest)
                except OSError:
                    shutil.copyfile(src / name, dest)
            else:
                shutil.copyfile(src / name, dest)
            files[name] = sha256_file(dest)
        if summary["format"] == "safetensors":  # the copies are what gets evaluated: check them too
            summary = validate_model_dir(tmp)
        for key in _CARRIED:
            if metadata.get(key) is None and own.get(key) is not None:
                metadata[key] = own[key]
        meta = model_metadata(model_id=model_id, family=family, source="local", summary=summary, files=files,
                              path=str(src), repo_id=None, revision=None, commit=None, **metadata)
        log.info("model directory %s -> %s: %d files, %d parameters", src, out_dir, len(files), meta["params"])
        return write_model_dir(tmp, out_dir, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["ModelDirError", "link_local_model"]
