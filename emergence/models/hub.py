"""Hugging Face hub models pinned to a commit, fetched once, checked byte for byte.

`fetch_hub_model(repo_id, revision, out_dir, ...)`:
1. resolves the revision (branch, tag such as Pythia's `step3000`, or commit) to a commit with
   `HfApi.model_info(files_metadata=True)`, which also gives every file's LFS sha256 (or git blob id) and size;
2. downloads only the files a model needs (config, generation config, tokenizer, safetensors weights, else
   `pytorch_model.bin`) with `hf_hub_download` pinned to that commit, into the shared HF cache (`HF_HOME`): a
   file already cached is not downloaded again, and a cached commit needs no network at all;
3. places real files in `out_dir` (hard links to the cache's blobs where the file system allows, else copies;
   never symlinks, so the directory stays valid if the cache is pruned, and the cache never rewrites a blob in
   place, so a hard link cannot change under a finished result);
4. checks each placed file against the hub's checksum; a mismatch (corrupt or partial file) is re-fetched once
   with `force_download`, then fails with the file, both checksums and the fix;
5. validates the directory (`checks.validate_model_dir`) and writes `model.json` (commit, sha256 per file,
   parameter counts from the weight headers, training metadata when known).

Without network (or with HF_HUB_OFFLINE=1) a revision already in the cache is served from it, checked against
the cache's own content-addressed blob names; otherwise the error says what is unreachable and how to fix it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from emergence.models import modeldir
from emergence.models.checks import (
    ChecksumError,
    ModelSourceError,
    file_digests,
    index_shards,
    select_files,
    validate_model_dir,
)

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_STEP = re.compile(r"(?:^|[-_/])step(\d+)$")


class HubUnreachableError(ModelSourceError):
    """The hub endpoint cannot be reached and the cache cannot serve the request."""


@dataclass(frozen=True)
class Expected:
    """What the hub (or the cache's blob name) says a file's bytes are."""

    sha256: str | None = None  # LFS files
    git_sha1: str | None = None  # plain git files: the blob id
    size: int | None = None

    def mismatch(self, sha256: str, git_sha1: str, size: int) -> str | None:
        """A description of the disagreement, or None when the file matches."""
        if self.sha256 and sha256 != self.sha256:
            return f"sha256 {sha256}, expected {self.sha256}"
        if self.git_sha1 and not self.sha256 and git_sha1 != self.git_sha1:
            return f"git blob id {git_sha1}, expected {self.git_sha1}"
        if self.size is not None and size != self.size:
            return f"{size} bytes, expected {self.size}"
        return None


def checkpoint_step_of(revision: str | None) -> int | None:
    """The training step a revision names (`step3000`, `...-step3000`), as Pythia's checkpoint branches do."""
    match = _STEP.search(revision or "")
    return int(match.group(1)) if match else None


def _hub():
    """huggingface_hub imported late: it reads HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE when first imported."""
    import huggingface_hub  # late: reads the HF_* variables at import
    import huggingface_hub.constants  # late, as huggingface_hub
    import huggingface_hub.file_download  # late, as huggingface_hub
    import huggingface_hub.utils  # late, as huggingface_hub

    return huggingface_hub


def _why(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _unreachable_message(endpoint: str, reason: str, what: str, cache_dir: str) -> str:
    return (
        f"no network: cannot reach the Hugging Face hub at {endpoint} ({reason}) to fetch "
        f"{what}, and it is not in the cache {cache_dir}. Fixes: run once where the hub is reachable (files are "
        "cached there and later runs need no network); or pre-download it on a machine with network into the "
        "same HF_HOME (`python -m emergence.models hf <repo> --revision <rev> --out <dir>`, or `hf download`) "
        "and set HF_HUB_OFFLINE=1; or point HF_ENDPOINT at a reachable hub mirror; or use `source: local` with a "
        "model directory."
    )


def unreachable_reason(endpoint: str | None = None, timeout: float = 3) -> tuple[str, str | None]:
    """(endpoint, why it cannot be reached or None when it answers with any HTTP status)."""
    hf = _hub()
    endpoint = (endpoint or hf.constants.ENDPOINT).rstrip("/")
    import httpx2  # late, as huggingface_hub (see _hub)

    try:
        hf.utils.get_session().head(endpoint + "/", timeout=timeout)
    except (httpx2.TransportError, OSError) as err:
        return endpoint, _why(err)
    return endpoint, None


def check_hub_reachable(endpoint: str | None = None, timeout: float = 3) -> str | None:
    """None when the hub answers (any HTTP status) or HF_HUB_OFFLINE=1 (only the cache is used), else a message
    naming the endpoint and the fixes; for checks before any job starts."""
    hf = _hub()
    if hf.constants.is_offline_mode():
        return None
    endpoint, reason = unreachable_reason(endpoint, timeout)
    if reason is None:
        return None
    return _unreachable_message(endpoint, reason, "models with `source: hf`", hf.constants.HF_HUB_CACHE)


def _revision_message(api, repo_id: str, revision: str, endpoint: str) -> str:
    try:
        refs = api.list_repo_refs(repo_id)
        branches, tags = sorted(b.name for b in refs.branches), sorted(t.name for t in refs.tags)
    except Exception:  # the listing is only a hint
        branches, tags = [], []
    wanted = checkpoint_step_of(revision)
    steps = [n for n in branches + tags if checkpoint_step_of(n) is not None]
    if wanted is not None and steps:
        nearest = sorted(steps, key=lambda n: (abs(checkpoint_step_of(n) - wanted), n))[:5]
        hint = f"nearest checkpoint revisions: {', '.join(nearest)}"
    elif branches or tags:
        def some(names):
            return ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "") or "none"

        hint = f"branches: {some(branches)}; tags: {some(tags)}"
    else:
        hint = "its branches and tags could not be listed"
    return (
        f"revision {revision!r} does not exist in {repo_id} on {endpoint} ({hint}). Fix the revision in the "
        "config: a branch, a tag or a full 40-character commit sha of that repository."
    )


def _resolve_online(repo_id, revision, endpoint, token):
    """(commit, {file: Expected}) from the hub; raises ModelSourceError subclasses with fixes."""
    hf = _hub()
    from huggingface_hub.errors import (  # late: see _hub
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = hf.HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise ModelSourceError(_revision_message(api, repo_id, revision, endpoint)) from None
    except GatedRepoError:
        raise ModelSourceError(
            f"{repo_id} on {endpoint} is gated: accept its licence on {endpoint}/{repo_id} with your account, then "
            "log in (`hf auth login`) or set HF_TOKEN in the environment of the workflow"
        ) from None
    except RepositoryNotFoundError:
        raise ModelSourceError(
            f"repository {repo_id!r} not found on {endpoint} (or it is private and no valid token was sent). "
            "Check the repo id in the config (owner/name, e.g. EleutherAI/pythia-70m); for a private repository "
            "log in (`hf auth login`) or set HF_TOKEN."
        ) from None
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code >= 500:
            raise HubUnreachableError(
                f"the hub at {endpoint} answered {err.response.status_code} for {repo_id}@{revision} (it is down "
                "or overloaded); retry later, or use a cached/pre-downloaded copy with HF_HUB_OFFLINE=1"
            ) from None
        if err.response is not None and err.response.status_code in (401, 403):
            raise ModelSourceError(
                f"the hub at {endpoint} rejected the credentials sent for {repo_id} "
                f"({err.response.status_code}): renew the token (`hf auth login`, or HF_TOKEN) or unset a stale "
                "HF_TOKEN"
            ) from None
        raise ModelSourceError(f"the hub at {endpoint} refused {repo_id}@{revision}: {err}") from None
    except OfflineModeIsEnabled:
        raise  # handled by the caller (cache fallback)
    if not info.sha or info.siblings is None:
        raise ModelSourceError(f"the hub at {endpoint} gave no commit or file list for {repo_id}@{revision}")
    expected = {
        s.rfilename: Expected(sha256=s.lfs.sha256, size=s.lfs.size) if s.lfs
        else Expected(git_sha1=s.blob_id, size=s.size)
        for s in info.siblings
    }
    return info.sha, expected


def _resolve_cached(repo_id: str, revision: str, cache_dir: str):
    """(commit, {file: Expected}) from the HF cache: refs/<revision> gives the commit, the snapshot the files, and
    each file's blob name its checksum (sha256 for LFS files, git blob id otherwise). None if not cached."""
    hf = _hub()
    storage = Path(cache_dir) / hf.file_download.repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = revision if _SHA1.fullmatch(revision) else None
    ref = storage / "refs" / revision
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    snapshot = storage / "snapshots" / (commit or "-")
    if commit is None or not snapshot.is_dir():
        return None
    expected = {}
    for path in snapshot.rglob("*"):
        if path.is_file():
            blob = Path(os.path.realpath(path)).name
            expected[path.relative_to(snapshot).as_posix()] = Expected(
                sha256=blob if _SHA256.fullmatch(blob) else None, git_sha1=blob if _SHA1.fullmatch(blob) else None)
    return commit, expected


def resolve_revision(repo_id: str, revision: str = "main", *, endpoint: str | None = None, token=None,
                     cache_dir: str | None = None) -> tuple[str, dict[str, Expected], bool]:
    """(commit, expected checksums of every file at that commit, from_cache) for a repo revision.

    Offline mode or an unreachable hub falls back to the cache (logged); if the cache lacks it, the error names
    the endpoint and the fixes.
    """
    hf = _hub()
    import httpx2  # late, as huggingface_hub (see _hub)
    from huggingface_hub.errors import OfflineModeIsEnabled  # late: see _hub

    endpoint = (endpoint or hf.constants.ENDPOINT).rstrip("/")
    cache_dir = str(cache_dir or hf.constants.HF_HUB_CACHE)
    what = f"{repo_id}@{revision}"
    if hf.constants.is_offline_mode():
        cached = _resolve_cached(repo_id, revision, cache_dir)
        if cached is None:
            raise HubUnreachableError(
                f"HF_HUB_OFFLINE=1 is set and {what} is not in the cache {cache_dir}. Unset HF_HUB_OFFLINE to let "
                "the workflow download it, or pre-download it into this HF_HOME on a machine with network "
                f"(`python -m emergence.models hf {repo_id} --revision {revision} --out <dir>`)."
            )
        log.info("HF_HUB_OFFLINE=1: %s resolved from the cache to commit %s", what, cached[0])
        return (*cached, True)
    try:
        commit, expected = _resolve_online(repo_id, revision, endpoint, token)
    except (httpx2.TransportError, OfflineModeIsEnabled) as err:
        cached = _resolve_cached(repo_id, revision, cache_dir)
        if cached is None:
            raise HubUnreachableError(_unreachable_message(endpoint, _why(err), what, cache_dir)) from None
        log.warning("hub %s unreachable (%s): using the cached commit %s of %s", endpoint, err, cached[0], what)
        return (*cached, True)
    return commit, expected, False


def _remember_ref(repo_id: str, revision: str, commit: str, cache_dir: str) -> None:
    """Record revision -> commit in the cache's refs/ (as hf_hub_download does for a branch or tag), so the
    revision resolves offline later; downloads are pinned to the commit, which records no ref."""
    if revision == commit:
        return
    hf = _hub()
    ref = Path(cache_dir) / hf.file_download.repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" / revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.is_file() or ref.read_text() != commit:
            ref.write_text(commit)
    except OSError as err:  # a read-only cache still serves downloads
        log.warning("could not record %s@%s -> %s in the cache: %s", repo_id, revision, commit, err)


def _drop_cached(path: str | Path) -> None:
    """Remove a bad file from the cache (its blob and snapshot link), so nothing reuses it."""
    for p in {os.path.realpath(path), str(path)}:
        try:
            os.unlink(p)
        except OSError:
            pass


def _fetch_file(name, *, repo_id, commit, expected: Expected | None, dest: Path, cache_dir, endpoint, token,
                offline: bool) -> str:
    """Download (or reuse) one file pinned to `commit`, place it at `dest`, check it; return its sha256."""
    hf = _hub()
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError  # late: see _hub

    expected = expected or Expected()
    problem, cached = None, None
    for attempt in range(1 if offline else 2):
        force = attempt > 0
        try:
            cached = hf.hf_hub_download(repo_id, name, revision=commit, cache_dir=cache_dir, endpoint=endpoint,
                                        token=token, force_download=force)
        except LocalEntryNotFoundError as err:
            raise HubUnreachableError(_unreachable_message(endpoint, _why(err), f"{repo_id}@{commit}: {name}",
                                                           cache_dir)) from None
        except HfHubHTTPError as err:
            raise ModelSourceError(f"downloading {name} of {repo_id}@{commit} from {endpoint} failed: {err}") from None
        except OSError as err:  # the download's own size check ("Consistency check failed"), a broken stream
            problem = f"download failed ({err})"
            log.warning("%s of %s@%s: %s%s", name, repo_id, commit, problem, "" if force else "; re-fetching it")
            continue
        modeldir.place(cached, dest)  # a hard link to the cache's blob where possible
        digests = file_digests(dest)
        problem = expected.mismatch(*digests)
        if problem is None:
            return digests[0]
        log.warning("%s of %s@%s is corrupt or partial (%s)%s", name, repo_id, commit, problem,
                    "" if force or offline else "; re-fetching it")
    dropped = ""
    if cached is not None:
        _drop_cached(cached)
        dropped = " The bad copy was removed from the cache."
    dest.unlink(missing_ok=True)
    fix = ("HF_HUB_OFFLINE=1 is set, so it cannot be re-fetched: unset it, or re-download the file into the cache"
           if offline else
           "it was re-fetched once and is still wrong, so the hub, a mirror (HF_ENDPOINT), a proxy or this disk is "
           "damaging it; retry later, or check the disk and the network path")
    raise ChecksumError(f"{name} of {repo_id}@{commit}: {problem}.{dropped} Fix: {fix}.")


def fetch_hub_model(repo_id: str, revision: str | None, out_dir: str | Path, *, family: str, model_id: str,
                    run: str | None = None, cache_dir: str | None = None, endpoint: str | None = None,
                    token: str | bool | None = None, **metadata) -> dict:
    """Fetch `repo_id` at `revision` (branch, tag or commit; default main) into `out_dir`; return its model.json.

    `metadata`: params, nonembedding_params, train_tokens, tokens_per_step, checkpoint_step (default: parsed from
    a `stepN` revision), final_checkpoint, seed, heldout_loss, train_flops (see `modeldir.model_metadata`).
    Raises ModelSourceError (HubUnreachableError, ChecksumError, ModelDirError) with the problem and the fix.
    """
    hf = _hub()
    revision = revision or "main"
    endpoint = (endpoint or hf.constants.ENDPOINT).rstrip("/")
    cache_dir = str(cache_dir or hf.constants.HF_HUB_CACHE)
    out_dir = Path(out_dir)
    commit, expected, from_cache = resolve_revision(repo_id, revision, endpoint=endpoint, token=token,
                                                    cache_dir=cache_dir)
    offline = from_cache  # the hub is not usable for re-fetches
    wanted, index = select_files(list(expected))
    with modeldir.staged(out_dir) as tmp:

        def fetch(name: str) -> str:
            return _fetch_file(name, repo_id=repo_id, commit=commit, expected=expected.get(name), dest=tmp / name,
                               cache_dir=cache_dir, endpoint=endpoint, token=token, offline=offline)

        files = {name: fetch(name) for name in wanted}
        if index:
            for shard in sorted(index_shards(tmp / index) - set(files)):
                if shard not in expected:
                    raise ModelSourceError(
                        f"{index} of {repo_id}@{commit} names the shard {shard}, which "
                        + ("is not in the cache (a partial download?): unset HF_HUB_OFFLINE to fetch it"
                           if from_cache else "the repository does not have: the repository is broken at this "
                           "revision; pick another revision")
                    )
                files[shard] = fetch(shard)
        if not any(n.endswith((".safetensors", ".bin")) for n in files):
            raise ModelSourceError(
                f"{repo_id}@{revision} (commit {commit}) has no weights (no *.safetensors or pytorch_model.bin "
                f"among {', '.join(sorted(expected)[:20])}"
                + (", as cached" if from_cache else "")
                + "). Pick a revision or repository with transformers weights."
            )
        summary = validate_model_dir(tmp)
        if metadata.get("checkpoint_step") is None:
            metadata["checkpoint_step"] = checkpoint_step_of(revision)
        meta = modeldir.model_metadata(model_id=model_id, family=family, source="hf", summary=summary, files=files,
                                       run=run if run is not None else repo_id, repo_id=repo_id, revision=revision,
                                       commit=commit, endpoint=endpoint, **metadata)
        log.info("fetched %s@%s (commit %s) into %s: %d files, %d parameters", repo_id, revision, commit, out_dir,
                 len(files), meta["params"])
        if not from_cache:
            _remember_ref(repo_id, revision, commit, cache_dir)
        return modeldir.commit(tmp, out_dir, meta)


def revision_dir_name(revision: str) -> str:
    """A folder name for a revision (`refs/pr/1` -> `refs_pr_1`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", revision)
