"""``openie4pp push``: a finished shard folder onto the Hugging Face Hub as a dataset repo.

The token comes from ``HF_TOKEN`` only (never an option: a command line ends up in shell histories,
``ps`` and the manifests that record how an output was made), the Hub from ``HF_ENDPOINT``. Both are
read here and passed on explicitly, so a token file on disk is never used and an endpoint set after
huggingface_hub was imported still counts. The work is :func:`openie4pp.publish.push_folder`.
"""

from __future__ import annotations

import argparse
import json
import os

from openie4pp.errors import EXIT_OK, UsageError

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR",
                        help="a finished shard folder (annotate, convert or merge output)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the dataset repo, NAMESPACE/NAME")
    parser.add_argument("--private", action="store_true",
                        help="create the repo private (an existing repo keeps its visibility)")
    parser.add_argument("--revision", default=None,
                        help="the branch to commit to, created when missing (default: the main branch)")
    parser.add_argument("--commit-message", default=None,
                        help="the commit's title (default: 'openie4pp push: N files of DIR')")


def main(args: argparse.Namespace) -> int:
    """Check the folder, the repo id and the environment, then upload; print the URLs and counts."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        raise UsageError("HF_HUB_OFFLINE is set: push needs the network (unset HF_HUB_OFFLINE to publish)")
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise UsageError("HF_TOKEN is not set: export a Hugging Face write token "
                         "(https://huggingface.co/settings/tokens) in the environment; it is never an option")
    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    from openie4pp.publish import push_folder

    result = push_folder(args.dir, args.repo_id, token=token, endpoint=endpoint, private=args.private,
                         revision=args.revision, commit_message=args.commit_message)
    unchanged = f"; {len(result.unchanged)} already there unchanged" if result.unchanged else ""
    print(f"pushed {len(result.files)} files ({result.bytes} bytes{unchanged}) to {result.repo_url}"
          f"{' (private)' if result.private else ''}")
    print(f"commit: {result.commit_url}")
    print(json.dumps(result.as_dict()))
    return EXIT_OK
