"""A fake Hugging Face hub on 127.0.0.1 for tests: the endpoints huggingface_hub 2.4 calls to download a model.

Point HF_ENDPOINT at `server.url` and the real `HfApi.model_info` / `hf_hub_download` code runs against it:

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}` (`?blobs=true`): id, sha (the commit) and
  siblings with size, blobId and, for LFS files, lfs {sha256, size, pointerSize}, as `model_info(files_metadata=
  True)` reads them;
- `GET /api/models/{repo}/refs`: branches and tags (`list_repo_refs`);
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: plain git files answer 200 with `ETag` (the git blob id),
  `Content-Length` and `X-Repo-Commit`; LFS files (`*.safetensors`, `*.bin`, ...) answer 302 to a "CDN" URL on
  `localhost` (another host name, as the hub's CDN is, so huggingface_hub reads the metadata from the redirect
  itself) with `X-Linked-Etag` (the sha256), `X-Linked-Size` and `X-Repo-Commit`;
- `GET /cdn/{sha256}`: the LFS bytes;
- errors with the hub's `X-Error-Code` headers: `RepoNotFound` (401, as the hub answers anonymous callers),
  `RevisionNotFound` (404), `EntryNotFound` (404), `GatedRepo` (403).

`server.gets[(repo_id, filename)]` counts the requests that served a file's bytes; `server.corrupt(...)`
damages a file's bytes on the next or on every download ("flip": same length, one byte changed; "truncate":
half the bytes, with a Content-Length that says so).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pt", ".h5", ".msgpack", ".onnx")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


class FakeRepo:
    """A model repository: commits (file name -> bytes), branches and tags pointing at them."""

    def __init__(self, repo_id: str, *, gated: bool = False):
        self.repo_id = repo_id
        self.gated = gated
        self.commits: dict[str, dict[str, bytes]] = {}
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}

    def commit(self, files: dict[str, bytes], *, branch: str = "main", tags: tuple[str, ...] = ()) -> str:
        """Add a commit holding exactly `files` on `branch` (and `tags`); return its sha."""
        digest = hashlib.sha1(f"{self.repo_id}:{len(self.commits)}".encode())
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        self.branches[branch] = sha
        for tag in tags:
            self.tags[tag] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.branches.get(revision) or self.tags.get(revision)

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith(LFS_SUFFIXES)

    def sibling(self, name: str, data: bytes) -> dict:
        if self.is_lfs(name):
            pointer = lfs_pointer(data)
            return {"rfilename": name, "size": len(data), "blobId": git_blob_id(pointer),
                    "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": len(pointer)}}
        return {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}


class HubServer:
    """The fake hub, serving in a daemon thread; use as a context manager or call start()/stop()."""

    def __init__(self, *, lfs_redirect: bool = True):
        self.repos: dict[str, FakeRepo] = {}
        self.lfs_redirect = lfs_redirect
        self.gets: Counter = Counter()
        self.requests: list[tuple[str, str]] = []
        self._corrupt: dict[tuple[str, str], list] = {}  # (repo, file) -> [mode, remaining times or None]
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------------------------------------- set-up
    def add_repo(self, repo_id: str, **kwargs) -> FakeRepo:
        self.repos[repo_id] = FakeRepo(repo_id, **kwargs)
        return self.repos[repo_id]

    def corrupt(self, repo_id: str, filename: str, *, mode: str = "flip", times: int | None = 1) -> None:
        """Damage the next `times` downloads of a file (None: every download)."""
        assert mode in ("flip", "truncate")
        with self._lock:
            self._corrupt[(repo_id, filename)] = [mode, times]

    def healthy(self) -> None:
        with self._lock:
            self._corrupt.clear()

    def downloads(self, repo_id: str | None = None) -> int:
        with self._lock:
            return sum(n for (repo, _), n in self.gets.items() if repo_id in (None, repo))

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------------------------------ content
    def _payload(self, repo_id: str, filename: str, data: bytes) -> bytes:
        """The bytes a download gets, counted and possibly damaged."""
        with self._lock:
            self.gets[(repo_id, filename)] += 1
            rule = self._corrupt.get((repo_id, filename))
            if rule is None or rule[1] == 0:
                return data
            if rule[1] is not None:
                rule[1] -= 1
            mode = rule[0]
        if mode == "truncate":
            return data[: len(data) // 2]
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._dispatch(head=True)

    def do_GET(self):
        self._dispatch(head=False)

    # ----------------------------------------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, *, head: bool = False,
              content_length: int | None = None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj, head: bool):
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head=head)

    def _error(self, status: int, code: str, message: str, head: bool, extra: dict | None = None):
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                  "X-Error-Message": message, **(extra or {})}, head=head)

    def _repo(self, repo_id: str, head: bool) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found", head)
        elif repo.gated:
            self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                        "and be authenticated to access it. Please log in.", head)
            return None
        return repo

    def _commit(self, repo: FakeRepo, revision: str, head: bool) -> str | None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        return sha

    # ------------------------------------------------------------------------------------------------ routes
    def _dispatch(self, head: bool):
        hub = self.hub
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        with hub._lock:
            hub.requests.append((self.command, self.path))
        if path == "/":
            return self._send(200, b"fake hub", head=head)
        if m := re.fullmatch(r"/api/models/(.+)/refs", path):
            if (repo := self._repo(unquote(m[1]), head)) is None:
                return
            def refs(kind, names):
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in sorted(names.items())]

            return self._json({"branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags),
                               "converts": []}, head)
        if m := re.fullmatch(r"/api/models/(.+?)(?:/revision/([^/]+))?", path):
            if (repo := self._repo(unquote(m[1]), head)) is None:
                return
            if (sha := self._commit(repo, unquote(m[2] or "main"), head)) is None:
                return
            files = repo.commits[sha]
            blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
            siblings = [repo.sibling(n, d) if blobs else {"rfilename": n} for n, d in sorted(files.items())]
            return self._json({"_id": sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": sha,
                               "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                               "tags": ["transformers"], "library_name": "transformers",
                               "lastModified": "2024-01-01T00:00:00.000Z", "siblings": siblings}, head)
        if m := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
            repo_id, filename = query["repo"][0], query["file"][0]
            data = next((d for c in hub.repos[repo_id].commits.values() for n, d in c.items()
                         if n == filename and hashlib.sha256(d).hexdigest() == m[1]), None)
            if data is None:
                return self._send(404, b"no such blob", head=head)
            return self._serve(repo_id, filename, data, {}, head)
        if m := re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path):
            return self._resolve(unquote(m[1]), unquote(m[2]), unquote(m[3]), head)
        self._send(404, b"not a route of the fake hub", head=head)

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool):
        if (repo := self._repo(repo_id, head)) is None:
            return
        if (sha := self._commit(repo, revision, head)) is None:
            return
        data = repo.commits[sha].get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"", head,
                               {"X-Repo-Commit": sha})
        if repo.is_lfs(filename) and self.hub.lfs_redirect:
            sha256 = hashlib.sha256(data).hexdigest()
            location = (f"http://localhost:{self.hub.port}/cdn/{sha256}?repo={quote(repo_id, safe='')}"
                        f"&file={quote(filename, safe='')}")
            return self._send(302, b"", {"Location": location, "X-Repo-Commit": sha,
                                         "ETag": f'"{git_blob_id(lfs_pointer(data))}"',
                                         "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": len(data)}, head=head)
        etag = hashlib.sha256(data).hexdigest() if repo.is_lfs(filename) else git_blob_id(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"'}
        if repo.is_lfs(filename):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": len(data)})
        self._serve(repo_id, filename, data, headers, head)

    def _serve(self, repo_id: str, filename: str, data: bytes, headers: dict, head: bool):
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "none", **headers}
        if head:
            return self._send(200, b"", headers, head=True, content_length=len(data))
        self._send(200, self.hub._payload(repo_id, filename, data), headers)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (a hub that is down / no network)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
