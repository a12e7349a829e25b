"""The BIG-bench files that ship with the package (`layout.SHIPPED_BIGBENCH`), as its PROVENANCE.json lists them.

A leaf of its own: the ladder's contamination guard reads these files, so training depends on this module and
not on task conversion (a change to `bigbench` or `views` retrains nothing).
"""

from __future__ import annotations

import json
from functools import cache

from emergence import layout


@cache
def provenance() -> dict:
    """The pinned archive the files were copied from (`archive`) and the files themselves (`files`)."""
    return json.loads((layout.SHIPPED_BIGBENCH / "PROVENANCE.json").read_text())


def shipped_files() -> dict:
    """Shipped task files (relative to `benchmark_tasks/`) -> {archive_path, sha256, bytes}."""
    return provenance()["files"]
