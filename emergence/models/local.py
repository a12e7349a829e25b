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
from pathlib import Path

from emergence.io import sha256_file
from emergence.models import modeldir
from emergence.models.checks import ModelDirError, index_shards, select_files, validate_model_dir

log = logging.getLogger(__name__)

_CARRIED = tuple(key for key in modeldir.SCALE_KEYS if key != "family")  # from a source's own model.json


def link_local_model(path: str | Path, out_dir: str | Path, *, family: str, model_id: str,
                     link: str = "copy", **metadata) -> dict:
    """Validate the model directory `path`, copy its model files into `out_dir`, write model.json; return it.

    `metadata`: run, params, nonembedding_params, train_tokens, tokens_per_step, checkpoint_step,
    final_checkpoint, seed, heldout_loss, train_flops (see `modeldir.model_metadata`). Raises ModelDirError or
    ChecksumError naming the file and the fix.
    """
    if link not in ("copy", "hardlink"):
        raise ValueError(f"link must be 'copy' or 'hardlink', got {link!r}")
    src = Path(path).expanduser().resolve()
    out_dir = Path(out_dir)
    summary = validate_model_dir(src)
    own = modeldir.verify(src, fix=f"Restore it, or delete {src / modeldir.METADATA_FILE} if the change was "
                          "deliberate.") if (src / modeldir.METADATA_FILE).is_file() else {}
    names = {p.name for p in src.iterdir() if p.is_file()}
    wanted, index = select_files(names)
    if index:
        wanted = sorted(set(wanted) | index_shards(src / index))

    with modeldir.staged(out_dir) as tmp:
        files = {}
        for name in wanted:
            modeldir.place(src / name, tmp / name, hardlink=link == "hardlink")
            files[name] = sha256_file(tmp / name)
        if summary["format"] == "safetensors":  # the copies are what gets evaluated: check them too
            summary = validate_model_dir(tmp)
        for key in _CARRIED:
            if metadata.get(key) is None and own.get(key) is not None:
                metadata[key] = own[key]
        meta = modeldir.model_metadata(model_id=model_id, family=family, source="local", summary=summary,
                                       files=files, path=str(src), repo_id=None, revision=None, commit=None,
                                       **metadata)
        log.info("model directory %s -> %s: %d files, %d parameters", src, out_dir, len(files), meta["params"])
        return modeldir.commit(tmp, out_dir, meta)


__all__ = ["ModelDirError", "link_local_model"]
