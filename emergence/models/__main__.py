"""Command line: pre-download a hub model, import a local one, or check the hub is reachable.

    python -m emergence.models hf EleutherAI/pythia-70m --revision step3000 --out models/p70m-3000 --family pythia
    python -m emergence.models local path/to/model --out models/mine --family mine
    python -m emergence.models check-hub

Prints the model.json written; on a problem prints its message to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emergence.models.checks import ModelSourceError
from emergence.models.hub import check_hub_reachable, fetch_hub_model
from emergence.models.local import link_local_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emergence.models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, what in (("hf", "repo id (owner/name)"), ("local", "model directory")):
        p = sub.add_parser(name)
        p.add_argument("source", help=what)
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--family", required=True)
        p.add_argument("--model-id", help="default: the output folder's name")
        p.add_argument("--run")
        p.add_argument("--params", type=int)
        p.add_argument("--train-tokens", type=int)
        p.add_argument("--tokens-per-step", type=int)
        p.add_argument("--checkpoint-step", type=int)
        if name == "hf":
            p.add_argument("--revision", default="main")
        else:
            p.add_argument("--link", choices=("copy", "hardlink"), default="copy")
    p = sub.add_parser("check-hub")
    p.add_argument("--endpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "check-hub":
            problem = check_hub_reachable(args.endpoint)
            if problem:
                raise ModelSourceError(problem)
            print("hub reachable (or HF_HUB_OFFLINE=1)")
            return 0
        common = {"family": args.family, "model_id": args.model_id or args.out.name, "run": args.run,
                  "params": args.params, "train_tokens": args.train_tokens, "tokens_per_step": args.tokens_per_step}
        if args.checkpoint_step is not None:
            common["checkpoint_step"] = args.checkpoint_step
        if args.command == "hf":
            meta = fetch_hub_model(args.source, args.revision, args.out, **common)
        else:
            meta = link_local_model(args.source, args.out, link=args.link, **common)
    except ModelSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(meta, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
