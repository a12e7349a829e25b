"""Glue for the thin Snakemake scripts: logging into the rule's `log:` file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str | Path):
    """Send logging, warnings and stray stdout/stderr of the block to `log_path`, and log any exception."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        logging.basicConfig(stream=fh, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.captureWarnings(True)
        try:
            yield
        except Exception as err:
            logging.getLogger("emergence").exception("job failed")
            # the reason on the console too: a message that names the problem and its fix helps only where it is seen
            print(f"job failed: {type(err).__name__}: {err}\n(traceback in {log_path})", file=sys.__stderr__)
            raise
