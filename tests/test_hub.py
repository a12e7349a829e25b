"""Model sources: the hub path end to end against a fake hub on 127.0.0.1, and local model directories.

Each hub fetch runs `python -m emergence.models hf ...` in a subprocess, as a Snakemake job would, with
HF_ENDPOINT pointed at `tests.hub_server.HubServer` and HF_HOME in a temporary folder, so the real
huggingface_hub code (model_info, hf_hub_download, its cache) runs without network.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from emergence.aggregate import MODEL_COLUMNS
from emergence.ladder import plan
from emergence.ladder.model import ModelSize
from emergence.ladder.tokenizer import build_tokenizer
from emergence.models.checks import ChecksumError, ModelDirError, validate_model_dir
from emergence.models.local import link_local_model
from tests.conftest import REPO, snakemake
from tests.hub_server import HubServer, closed_port_url

TINY = "org/tiny"
NEEDED = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
SIZE = plan.model_size(16, 32)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_tiny(path: Path, seed: int, size: ModelSize = SIZE, **save_kwargs) -> Path:
    """A ladder-shaped GPT-2 (width 16) and the char tokenizer, saved as a hub repository would hold them."""
    import torch

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    size.build(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id).save_pretrained(
        path, **save_kwargs)
    tokenizer.save_pretrained(path)
    return path


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("models")
    early, late = save_tiny(root / "early", 0), save_tiny(root / "late", 1, max_shard_size="10KB")
    binonly = root / "binonly"
    binonly.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(early / name, binonly / name)
    from transformers import AutoModelForCausalLM

    torch.save(AutoModelForCausalLM.from_pretrained(early).state_dict(), binonly / "pytorch_model.bin")
    return {"early": early, "late": late, "binonly": binonly}


@pytest.fixture(scope="module")
def hub(models):
    """org/tiny: step1000 and step3000 (tag v0.1) hold the early weights plus files a model does not need; main
    holds the late weights, sharded, next to a pytorch_model.bin that must not be fetched."""
    with HubServer() as server:
        repo = server.add_repo(TINY)
        extra = {"README.md": b"# tiny\n", "training_args.bin": b"\0" * 64, "onnx/model.onnx": b"onnx"}
        repo.commit({**files_of(models["early"]), "README.md": b"# early\n"}, branch="step1000")
        repo.commit({**files_of(models["early"]), **extra}, branch="step3000", tags=("v0.1",))
        repo.commit({**files_of(models["late"]), **extra, "pytorch_model.bin": b"unused"}, branch="main")
        server.add_repo("org/binonly").commit(files_of(models["binonly"]))
        server.add_repo("org/gated", gated=True).commit(files_of(models["early"]))
        yield server


@pytest.fixture(autouse=True)
def _healthy_hub(request):
    yield
    if "hub" in request.fixturenames:
        request.getfixturevalue("hub").healthy()


def run_cli(*args: str, endpoint: str, hf_home: Path, offline: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "emergence.models", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO, check=False)


def fetch(repo_id: str, revision: str, out: Path, *, endpoint: str, hf_home: Path, offline: bool = False,
          extra: tuple[str, ...] = ()) -> dict:
    proc = run_cli("hf", repo_id, "--revision", revision, "--out", str(out), "--family", "tiny", "--model-id", "tiny",
                   *extra, endpoint=endpoint, hf_home=hf_home, offline=offline)
    assert proc.returncode == 0, proc.stderr[-4000:]
    meta = json.loads((out / "model.json").read_text())
    assert meta == json.loads(proc.stdout)
    return meta


def fetch_error(repo_id: str, revision: str, out: Path, *, endpoint: str, hf_home: Path, offline=False) -> str:
    proc = run_cli("hf", repo_id, "--revision", revision, "--out", str(out), "--family", "tiny",
                   endpoint=endpoint, hf_home=hf_home, offline=offline)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-4000:])
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    return proc.stderr.strip().splitlines()[-1]  # the one-line message


def logits(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(torch.tensor([tokenizer.encode("Q: What is 12 plus 34?\nA:")])).logits


# -------------------------------------------------------------------------------------------------- hub path
def test_revisions_resolve_to_their_commits_and_load_as_the_source(hub, models, tmp_path):
    import torch

    repo, before = hub.repos[TINY], hub.gets.copy()
    meta = fetch(TINY, "step3000", tmp_path / "early", endpoint=hub.url, hf_home=tmp_path / "hf")
    commit = repo.branches["step3000"]
    assert meta["commit"] == commit != repo.branches["main"]
    assert (meta["source"], meta["repo_id"], meta["revision"], meta["checkpoint_step"]) == ("hf", TINY, "step3000",
                                                                                            3000)
    served = repo.commits[commit]
    assert meta["files"] == {name: sha256(served[name]) for name in NEEDED}
    for name, digest in meta["files"].items():  # real files in the output folder, not links into the cache
        path = tmp_path / "early" / name
        assert not path.is_symlink() and sha256(path.read_bytes()) == digest
    downloaded = {f for (r, f), n in (hub.gets - before).items() if r == TINY}
    assert downloaded == NEEDED  # no README, training_args.bin, onnx/ or pytorch_model.bin
    assert set(MODEL_COLUMNS) <= set(meta)
    assert (meta["params"], meta["nonembedding_params"]) == (SIZE.total_params(), SIZE.nonembedding_params())
    assert torch.equal(logits(tmp_path / "early"), logits(models["early"]))

    # main: sharded safetensors (index + shards), a pytorch_model.bin that is never fetched, training tokens given
    meta = fetch(TINY, "main", tmp_path / "late", endpoint=hub.url, hf_home=tmp_path / "hf",
                 extra=("--train-tokens", "1000"))
    assert meta["commit"] == repo.branches["main"] and meta["checkpoint_step"] is None
    assert "model.safetensors.index.json" in meta["files"] and "pytorch_model.bin" not in meta["files"]
    shards = {n for n in os.listdir(models["late"]) if n.startswith("model-000")}
    assert {n for n in meta["files"] if n.startswith("model-000")} == shards and len(shards) > 1
    assert meta["train_flops"] == 6 * SIZE.nonembedding_params() * 1000
    assert torch.equal(logits(tmp_path / "late"), logits(models["late"]))

    # a tag and a full commit sha pin the same commit
    assert fetch(TINY, "v0.1", tmp_path / "tag", endpoint=hub.url, hf_home=tmp_path / "hf")["commit"] == commit
    assert fetch(TINY, commit, tmp_path / "sha", endpoint=hub.url, hf_home=tmp_path / "hf")["commit"] == commit


def test_a_second_fetch_downloads_nothing_and_a_cached_commit_needs_no_network(hub, tmp_path):
    hf_home = tmp_path / "hf"
    first = fetch(TINY, "step3000", tmp_path / "a", endpoint=hub.url, hf_home=hf_home)
    gets, requests = hub.gets.copy(), len(hub.requests)
    assert fetch(TINY, "step3000", tmp_path / "b", endpoint=hub.url, hf_home=hf_home) == first
    assert hub.gets == gets  # the revision was resolved again, no file was downloaded

    requests = len(hub.requests)
    assert fetch(TINY, "step3000", tmp_path / "c", endpoint=hub.url, hf_home=hf_home, offline=True) == first
    assert len(hub.requests) == requests  # HF_HUB_OFFLINE=1: not a single request
    # hub down: the cached ref and blobs still serve the revision (with a warning)
    proc = run_cli("hf", TINY, "--revision", "step3000", "--out", str(tmp_path / "d"), "--family", "tiny",
                   endpoint=closed_port_url(), hf_home=hf_home)
    assert proc.returncode == 0 and "unreachable" in proc.stderr
    assert json.loads(proc.stdout)["files"] == first["files"]
    # offline, a revision never fetched is a clear error
    message = fetch_error(TINY, "main", tmp_path / "e", endpoint=hub.url, hf_home=hf_home, offline=True)
    assert "HF_HUB_OFFLINE=1" in message and "org/tiny@main" in message and "not in the cache" in message


@pytest.mark.faults
def test_corrupt_or_partial_downloads_are_fetched_again(hub, tmp_path):
    hf_home = tmp_path / "hf"
    key = (TINY, "model.safetensors")
    hub.corrupt(TINY, "model.safetensors", mode="flip", times=1)  # one byte changed, same length
    hub.corrupt(TINY, "tokenizer.json", mode="truncate", times=1)  # a plain git file cut short
    before = hub.gets.copy()
    proc = run_cli("hf", TINY, "--revision", "step3000", "--out", str(tmp_path / "a"), "--family", "tiny",
                   endpoint=hub.url, hf_home=hf_home)
    assert proc.returncode == 0, proc.stderr
    assert "corrupt or partial" in proc.stderr and "Consistency check failed" in proc.stderr
    assert hub.gets[key] - before[key] == 2
    assert hub.gets[(TINY, "tokenizer.json")] - before[(TINY, "tokenizer.json")] == 2
    served = hub.repos[TINY].commits[hub.repos[TINY].branches["step3000"]]
    meta = json.loads(proc.stdout)
    assert meta["files"]["model.safetensors"] == sha256(served["model.safetensors"])

    # a partial blob in the cache (e.g. a disk filled up): found on the next fetch and downloaded again
    blob = next((hf_home / "hub").glob(f"models--org--tiny/blobs/{meta['files']['model.safetensors']}"))
    partial = blob.with_name("partial")
    partial.write_bytes(blob.read_bytes()[:100])
    os.replace(partial, blob)
    gets = hub.gets[key]
    assert fetch(TINY, "step3000", tmp_path / "b", endpoint=hub.url, hf_home=hf_home)["files"] == meta["files"]
    assert hub.gets[key] == gets + 1


@pytest.mark.faults
def test_a_file_corrupt_on_every_download_fails_clearly(hub, tmp_path):
    hub.corrupt(TINY, "model.safetensors", mode="flip", times=None)
    expected = sha256(hub.repos[TINY].commits[hub.repos[TINY].branches["step1000"]]["model.safetensors"])
    message = fetch_error(TINY, "step1000", tmp_path / "a", endpoint=hub.url, hf_home=tmp_path / "hf")
    assert message.startswith("error: model.safetensors of org/tiny@") and f"expected {expected}" in message
    assert "re-fetched once" in message
    assert not list((tmp_path / "hf" / "hub").glob(f"models--org--tiny/blobs/{expected}"))  # no bad copy kept


@pytest.mark.faults
def test_unknown_revision_repo_or_gated_repo_name_the_problem(hub, tmp_path):
    kw = {"endpoint": hub.url, "hf_home": tmp_path / "hf"}
    message = fetch_error(TINY, "step3001", tmp_path / "a", **kw)
    assert "revision 'step3001' does not exist in org/tiny" in message
    assert "nearest checkpoint revisions: step3000, step1000" in message
    message = fetch_error(TINY, "no-such-branch", tmp_path / "a", **kw)
    assert "branches: main, step1000, step3000; tags: v0.1" in message
    assert "repository 'org/missing' not found" in fetch_error("org/missing", "main", tmp_path / "a", **kw)
    assert "is gated" in fetch_error("org/gated", "main", tmp_path / "a", **kw)


@pytest.mark.faults
def test_no_network_is_said_up_front_with_the_endpoint_and_the_fixes(hub, tmp_path):
    down = closed_port_url()
    message = fetch_error(TINY, "main", tmp_path / "a", endpoint=down, hf_home=tmp_path / "hf")
    assert message.startswith(f"error: no network: cannot reach the Hugging Face hub at {down}")
    assert "HF_HUB_OFFLINE=1" in message and "HF_ENDPOINT" in message and "source: local" in message
    proc = run_cli("check-hub", endpoint=down, hf_home=tmp_path / "hf")
    assert proc.returncode == 2 and down in proc.stderr
    assert run_cli("check-hub", endpoint=hub.url, hf_home=tmp_path / "hf").returncode == 0


def test_pytorch_bin_is_the_fallback_when_a_repo_has_no_safetensors(hub, models, tmp_path):
    import torch

    meta = fetch("org/binonly", "main", tmp_path / "m", endpoint=hub.url, hf_home=tmp_path / "hf")
    assert meta["weights_format"] == "bin" and "pytorch_model.bin" in meta["files"]
    assert meta["params"] == SIZE.total_params()  # the tied head is counted once
    assert torch.equal(logits(tmp_path / "m"), logits(models["early"]))


# ------------------------------------------------------------------------------------------------ local path
def test_a_local_model_directory_is_copied_checked_and_described(models, tmp_path):
    meta = link_local_model(models["early"], tmp_path / "m", family="mine", model_id="mine-1", train_tokens=500)
    assert (meta["source"], meta["path"], meta["commit"]) == ("local", str(models["early"]), None)
    assert meta["files"] == {n: sha256((models["early"] / n).read_bytes()) for n in NEEDED}
    assert os.stat(tmp_path / "m" / "model.safetensors").st_ino != os.stat(models["early"] / "model.safetensors").st_ino
    assert meta["train_flops"] == 6 * SIZE.nonembedding_params() * 500
    assert json.loads((tmp_path / "m" / "model.json").read_text()) == meta

    # a pipeline model directory (with its own model.json) keeps its metadata and is checked against it
    again = link_local_model(tmp_path / "m", tmp_path / "m2", family="mine", model_id="mine-2")
    assert again["train_tokens"] == 500 and again["files"] == meta["files"]
    (tmp_path / "m" / "config.json").write_text((tmp_path / "m" / "config.json").read_text() + " ")
    with pytest.raises(ChecksumError, match=r"config.json: sha256 .* records"):
        link_local_model(tmp_path / "m", tmp_path / "m3", family="mine", model_id="mine-3")


def broken_copy(models, tmp_path, name="broken", source="early") -> Path:
    path = tmp_path / name
    shutil.copytree(models[source], path)
    return path


@pytest.mark.faults
@pytest.mark.parametrize("damage, message", [
    ("no_weights", r"no weights in model directory .*broken .*save_pretrained"),
    ("truncated", r"corrupt or truncated safetensors file .*model.safetensors .*tensors need \d+ bytes"),
    ("garbage", r"corrupt or truncated safetensors file .*model.safetensors .*header length"),
    ("no_config", r"no config.json in .*broken: not a transformers model directory"),
    ("no_tokenizer", r"no tokenizer in .*broken .*tokenizer.save_pretrained"),
    ("missing_shard", r"missing 1 weight shard\(s\) named in model.safetensors.index.json: model-00002-of-0000\d"),
], ids=["no-weights", "truncated-safetensors", "garbage-safetensors", "no-config", "no-tokenizer", "missing-shard"])
def test_broken_local_directories_name_the_problem_and_the_fix(models, tmp_path, damage, message):
    path = broken_copy(models, tmp_path, source="late" if damage == "missing_shard" else "early")
    weights = path / "model.safetensors"
    if damage == "no_weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(os.urandom(4096))
    elif damage == "no_config":
        (path / "config.json").unlink()
    elif damage == "no_tokenizer":
        (path / "tokenizer.json").unlink()
    elif damage == "missing_shard":
        next(path.glob("model-00002-of-*.safetensors")).unlink()
    with pytest.raises(ModelDirError, match=message):
        link_local_model(path, tmp_path / "out", family="mine", model_id="x")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.faults
def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    small = ModelSize(width=16, n_layer=1, n_head=1, n_ctx=32, vocab_size=50)  # the ladder tokenizer has 129 ids
    path = save_tiny(tmp_path / "small", 0, size=small)
    with pytest.raises(ModelDirError, match=r"does not match the model: it has token ids up to 128 but the model's "
                                            r"embedding has only 50 rows"):
        validate_model_dir(path)


@pytest.mark.workflow
@pytest.mark.slow  # a whole study (~70 s): .ci/run runs it with the other slow tests
def test_a_hub_family_runs_through_the_workflow_and_downloads_once(hub, tmp_path):
    """`source: hf` in a config: revisions become checkpoints pinned to their commits, evaluated like the ladder's;
    a second run downloads nothing."""
    config = {
        "study": "hub", "tasks": ["addition_3digit"], "strategies": ["0shot"],
        "task_defaults": {"n_eval": 4, "n_fewshot_pool": 2}, "analysis": {"bootstrap_samples": 100},
        "models": [{"name": "tiny", "source": "hf", "revisions": ["step1000", "step3000"],
                    "members": [{"repo": TINY, "tokens_per_step": 2048, "train_tokens": 6_144_000}]}],
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    env = {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "study.yaml"), env=env)
    run_dir = next((tmp_path / "results/models").iterdir())
    repo = hub.repos[TINY]
    for revision, step in (("step1000", 1000), ("step3000", 3000)):
        meta = json.loads((run_dir / revision / "model.json").read_text())
        assert meta["commit"] == repo.branches[revision] and meta["train_tokens"] == step * 2048
        assert meta["model_id"] == f"tiny-tiny-{revision}" and meta["files"]["model.safetensors"] == sha256(
            (run_dir / revision / "model.safetensors").read_bytes())
    cells = pd.read_parquet(tmp_path / "results/hub/latest/cells.parquet")
    assert sorted(cells.model) == ["tiny-tiny-step1000", "tiny-tiny-step3000"]
    assert (cells.train_flops == 6 * cells.nonembedding_params * cells.train_tokens).all()

    downloads = sum(hub.gets.values())
    rerun = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "study.yaml"), env=env)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr and sum(hub.gets.values()) == downloads
