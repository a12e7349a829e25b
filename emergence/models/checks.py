"""Cheap checks of a transformers model directory, without loading the model.

A model directory is usable when it has `config.json`, weights (safetensors, or `pytorch_model.bin` when no
safetensors exist), readable weight headers, and a tokenizer whose token ids all index a row of the embedding.
`validate_model_dir` checks all of that from file headers in well under a second for any model size, and returns
the parameter counts the metadata needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
    "tokenizer.model", "added_tokens.json", "vocab.txt", "chat_template.jinja",
)
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"

# Tensor names of token embeddings / untied output heads (any architecture in transformers uses one of these).
_VOCAB_TENSOR_HINTS = ("wte", "embed", "lm_head", "word_embeddings")
_INPUT_EMBEDDING_SUFFIXES = ("wte.weight", "embed_tokens.weight", "embed_in.weight", "word_embeddings.weight")
_POSITION_TENSOR_HINTS = ("wpe.weight", "embed_positions.weight", "position_embeddings.weight")
_MAX_SAFETENSORS_HEADER = 100 * 2**20  # the safetensors format's own limit


class ModelSourceError(RuntimeError):
    """A model source cannot be used; the message names the problem and the fix."""


class ModelDirError(ModelSourceError):
    """A model directory is incomplete or inconsistent (missing weights, corrupt file, mismatched tokenizer)."""


class ChecksumError(ModelSourceError):
    """A file's bytes do not match the checksum the hub (or model.json) records."""


# ---------------------------------------------------------------------------------------------- file selection
def select_files(names: list[str] | set[str]) -> tuple[list[str], str | None]:
    """The files of a repository or directory a model needs: weights, config, generation config, tokenizer.

    Only top-level files. Weights are safetensors when any exist (an index and its shards, else
    `model.safetensors`, else every top-level `*.safetensors`), else `pytorch_model.bin` (or its index).
    Returns (sorted file names without shards named only in an index, the index file name or None): shards
    named by an index are added by the caller once the index is read (`index_shards`).
    """
    top = {n for n in names if "/" not in n}
    wanted = {n for n in top if n == CONFIG or n == GENERATION_CONFIG or n in TOKENIZER_FILES}
    for index, single, suffix in ((SAFETENSORS_INDEX, "model.safetensors", ".safetensors"),
                                  (BIN_INDEX, "pytorch_model.bin", ".bin")):
        if index in top:
            return sorted(wanted | {index}), index
        if single in top:
            return sorted(wanted | {single}), None
        if suffix == ".safetensors":
            shards = {n for n in top if n.endswith(suffix)}
            if shards:
                return sorted(wanted | shards), None
    return sorted(wanted), None


def index_shards(index_path: str | Path) -> set[str]:
    """The shard file names a `*.index.json` weight map points at."""
    try:
        weight_map = json.loads(Path(index_path).read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelDirError(
            f"weight index {index_path} is unreadable ({err}); re-download it or re-save the model with "
            "save_pretrained"
        ) from None
    return set(weight_map.values())


def weight_files(model_dir: Path) -> tuple[list[Path], str]:
    """The weight files of a directory and their format ('safetensors' or 'bin'), or a clear error."""
    names = {p.name for p in model_dir.iterdir() if p.is_file()}
    selected, index = select_files(names)
    weights = [n for n in selected if n.endswith((".safetensors", ".bin"))]
    if index:
        shards = sorted(index_shards(model_dir / index))
        missing = [s for s in shards if s not in names]
        if missing:
            raise ModelDirError(
                f"model directory {model_dir} is missing {len(missing)} weight shard(s) named in {index}: "
                f"{', '.join(missing[:5])}; copy or download the missing shards (a partial download?)"
            )
        weights = shards
    if not weights:
        raise ModelDirError(
            f"no weights in model directory {model_dir} (looked for model.safetensors, *.safetensors, "
            f"{SAFETENSORS_INDEX}, pytorch_model.bin, {BIN_INDEX}; found {', '.join(sorted(names)) or 'nothing'}). "
            "Point the source at the folder written by save_pretrained, or copy the weights next to config.json."
        )
    fmt = "safetensors" if weights[0].endswith(".safetensors") else "bin"
    return [model_dir / w for w in weights], fmt


# ------------------------------------------------------------------------------------------------ weight headers
def safetensors_header(path: str | Path) -> dict[str, dict]:
    """Tensor name -> {"dtype", "shape", "data_offsets"} from a safetensors file's header, checking the layout.

    A truncated or corrupt file (header length beyond the file, unparsable header, tensor data past the end of
    the file, or a file longer than its tensors) raises ModelDirError naming the file.
    """
    path = Path(path)
    size = path.stat().st_size

    def bad(why: str) -> ModelDirError:
        return ModelDirError(
            f"corrupt or truncated safetensors file {path} ({size} bytes): {why}. Delete it and download it again "
            "(a hub source re-fetches it on the next run), or re-save the model with save_pretrained."
        )

    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise bad("shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise bad(f"header length {n} does not fit the file")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad(f"header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    header.pop("__metadata__", None)
    end = 0
    for name, info in header.items():
        try:
            begin, stop = info["data_offsets"]
            shape = [int(d) for d in info["shape"]]
        except (TypeError, KeyError, ValueError):
            raise bad(f"tensor {name!r} has no valid shape/data_offsets") from None
        if not 0 <= begin <= stop:
            raise bad(f"tensor {name!r} has invalid data offsets {begin}..{stop}")
        end = max(end, stop)
        info["shape"] = shape
    if 8 + n + end != size:
        raise bad(f"tensors need {8 + n + end} bytes but the file has {size}")
    return header


def _bin_shapes(path: Path) -> dict[str, dict]:
    """Tensor shapes of a pytorch_model.bin, memory-mapped (no tensor data is read)."""
    import torch  # heavy; only pytorch_model.bin needs it, and the Snakefile imports these checks

    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise ModelDirError(
            f"corrupt or truncated weights file {path}: {type(err).__name__}: {err}. Delete it and download it "
            "again, or re-save the model."
        ) from None
    shapes, seen = {}, set()
    for name, tensor in state.items():
        if not hasattr(tensor, "shape"):
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:  # tied weights (lm_head = wte) are one storage saved under two names
            seen.add(key)
            shapes[name] = {"shape": list(tensor.shape)}
    return shapes


def tensor_shapes(weights: list[Path], fmt: str) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for path in weights:
        header = safetensors_header(path) if fmt == "safetensors" else _bin_shapes(path)
        shapes.update({name: info["shape"] for name, info in header.items()})
    return shapes


def count_params(shapes: dict[str, list[int]], embedding_rows: int | None, tied: bool = True) -> tuple[int, int]:
    """(total, non-embedding) parameters: non-embedding leaves out token and position embeddings and an untied
    output head (Kaplan et al. 2020), as the ladder's `ModelSize.nonembedding_params` does. With tied embeddings
    an `lm_head.weight` saved next to an input embedding of the same shape is counted once."""
    inputs = [shape for name, shape in shapes.items() if name.endswith(_INPUT_EMBEDDING_SUFFIXES)]
    total = nonembedding = 0
    for name, shape in shapes.items():
        if tied and name.endswith("lm_head.weight") and shape in inputs:
            continue
        n = math.prod(shape)
        total += n
        is_vocab = (embedding_rows is not None and len(shape) == 2 and shape[0] == embedding_rows
                    and any(h in name for h in _VOCAB_TENSOR_HINTS))
        if not is_vocab and not name.endswith(_POSITION_TENSOR_HINTS):
            nonembedding += n
    return total, nonembedding


# ---------------------------------------------------------------------------------------------------- tokenizer
def _max_id_plus_one(ids) -> int:
    ids = [int(i) for i in ids]
    return max(ids) + 1 if ids else 0


def tokenizer_size(model_dir: Path) -> int:
    """One more than the largest token id the tokenizer can produce (its size when ids are contiguous).

    Read from `tokenizer.json` or `vocab.json` (+ `added_tokens.json`) without importing transformers; other
    tokenizers (sentencepiece) are loaded with AutoTokenizer.
    """
    def read(name):
        try:
            return json.loads((model_dir / name).read_text())
        except (OSError, ValueError) as err:
            raise ModelDirError(
                f"tokenizer file {model_dir / name} is unreadable ({err}); re-download or re-save the tokenizer"
            ) from None

    added = read("added_tokens.json") if (model_dir / "added_tokens.json").exists() else {}
    if (model_dir / "tokenizer.json").exists():
        tok = read("tokenizer.json")
        vocab = (tok.get("model") or {}).get("vocab") or {}
        base = _max_id_plus_one(vocab.values()) if isinstance(vocab, dict) else len(vocab)  # Unigram: a list
        extra = _max_id_plus_one(t["id"] for t in tok.get("added_tokens") or [])
        return max(base, extra, _max_id_plus_one(added.values()))
    if (model_dir / "vocab.json").exists():
        return max(_max_id_plus_one(read("vocab.json").values()), _max_id_plus_one(added.values()))
    from transformers import AutoTokenizer  # heavy; only tokenizers without a JSON vocabulary need it

    try:
        return len(AutoTokenizer.from_pretrained(str(model_dir)))
    except Exception as err:
        raise ModelDirError(
            f"the tokenizer in {model_dir} does not load ({type(err).__name__}: {err}); save it with "
            "tokenizer.save_pretrained(<dir>)"
        ) from None


def has_tokenizer(names: set[str]) -> bool:
    return bool({"tokenizer.json", "tokenizer.model", "vocab.txt"} & names) or {"vocab.json", "merges.txt"} <= names


# ------------------------------------------------------------------------------------------------- whole directory
def validate_model_dir(model_dir: str | Path) -> dict:
    """Check a model directory cheaply (headers only) and describe it; raise ModelDirError naming the problem.

    Returns {"format", "weights" (file names), "architecture", "params", "nonembedding_params",
    "embedding_rows", "config_vocab_size", "tokenizer_size"}.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist; fix the path in the config")
    names = {p.name for p in model_dir.iterdir() if p.is_file()}
    if CONFIG not in names:
        raise ModelDirError(
            f"no {CONFIG} in {model_dir}: not a transformers model directory. Point the source at the folder "
            "written by save_pretrained (the one holding config.json and the weights)."
        )
    try:
        config = json.loads((model_dir / CONFIG).read_text())
    except ValueError as err:
        raise ModelDirError(f"{model_dir / CONFIG} is not valid JSON ({err}); re-download or re-save it") from None
    weights, fmt = weight_files(model_dir)
    shapes = tensor_shapes(weights, fmt)
    text_config = config.get("text_config") or {}
    config_vocab = config.get("vocab_size", text_config.get("vocab_size"))
    rows = next((shape[0] for name, shape in shapes.items() if name.endswith(_INPUT_EMBEDDING_SUFFIXES)), None)
    if rows is not None and config_vocab is not None and rows != config_vocab:
        raise ModelDirError(
            f"{model_dir / CONFIG} says vocab_size {config_vocab} but the weights' token embedding has {rows} rows: "
            "config.json and the weights come from different models; use the config saved with these weights"
        )
    rows = rows if rows is not None else config_vocab
    if not has_tokenizer(names):
        raise ModelDirError(
            f"no tokenizer in {model_dir} (looked for tokenizer.json, tokenizer.model, vocab.json + merges.txt, "
            "vocab.txt). Save the model's tokenizer there with tokenizer.save_pretrained(<dir>)."
        )
    n_tokens = tokenizer_size(model_dir)
    if rows is not None and n_tokens > rows:
        raise ModelDirError(
            f"the tokenizer in {model_dir} does not match the model: it has token ids up to {n_tokens - 1} but the "
            f"model's embedding has only {rows} rows (vocab_size). Use the tokenizer the model was trained with "
            "(the same repository and revision), or resize the model's embeddings."
        )
    total, nonembedding = count_params(shapes, rows, tied=config.get("tie_word_embeddings",
                                                                      text_config.get("tie_word_embeddings", True)))
    return {
        "format": fmt,
        "weights": [w.name for w in weights],
        "architecture": (config.get("architectures") or [None])[0],
        "params": total,
        "nonembedding_params": nonembedding,
        "embedding_rows": rows,
        "config_vocab_size": config_vocab,
        "tokenizer_size": n_tokens,
    }


# ------------------------------------------------------------------------------------------------------ checksums
def file_digests(path: str | Path, chunk: int = 1 << 20) -> tuple[str, str, int]:
    """(sha256, git blob sha1, size) of a file in one pass: the hub names LFS files by the first and plain git
    files by the second."""
    path = Path(path)
    size = path.stat().st_size
    sha256, git = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            sha256.update(block)
            git.update(block)
    return sha256.hexdigest(), git.hexdigest(), size
