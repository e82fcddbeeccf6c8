"""The ``openie4pp`` command line. Each subcommand is a thin shell over a library function,
imported lazily so that ``openie4pp validate`` does not pay for torch or matplotlib."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def _validate(args: argparse.Namespace) -> int:
    from openie4pp.validate import format_summary, summary_json, validate_paths

    summary = validate_paths(args.paths, max_kept_problems=args.max_problems)
    if args.rejected:
        Path(args.rejected).parent.mkdir(parents=True, exist_ok=True)
        with open(args.rejected, "w", encoding="utf-8") as out:
            for problem in summary.problems:
                out.write(problem.model_dump_json() + "\n")
    print(format_summary(summary))
    if args.json:
        print(summary_json(summary))
    return 0 if summary.ok else 1


def _convert(args: argparse.Namespace) -> int:
    from openie4pp.convert import convert_to_shards

    return convert_to_shards(
        args.format, Path(args.input), Path(args.out), lang=args.lang, dataset=args.dataset
    )


def _eval(args: argparse.Namespace) -> int:
    from openie4pp.eval.run import evaluate, format_table, summary_line

    result = evaluate(
        args.benchmark, Path(args.pred), binary=args.binary, gold=Path(args.gold) if args.gold else None
    )
    print(format_table(result))
    if args.plot:
        from openie4pp.eval.curve import plot_pr

        print(f"PR curve: {plot_pr(result, args.plot)}")
    if args.json:
        print(summary_line(result))
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from openie4pp.annotate.run import annotate_main

    return annotate_main(args)


def _merge(args: argparse.Namespace) -> int:
    from openie4pp.annotate.run import merge_main

    return merge_main(args)


def _train(args: argparse.Namespace) -> int:
    from openie4pp.train.recipe import load_config, train

    config = load_config(args.config, args.overrides, args.stage)
    metrics = train(config)
    if os.environ.get("RANK", "0") == "0":  # once, also under `accelerate launch`
        print(f"stage {config['stage']}: {metrics['steps']} steps -> {config['output_dir']}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from openie4pp.train.extract import extract_main

    return extract_main(args)


def _quickstart(args: argparse.Namespace) -> int:
    from openie4pp.quickstart import quickstart_main

    return quickstart_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openie4pp", description="Cross-lingual Open Information Extraction."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check OpenIE4++ shards or JSONL files (schema + grounding)")
    validate.add_argument("paths", nargs="+", help="shard folders or JSONL files")
    validate.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    validate.add_argument(
        "--rejected", metavar="FILE", help="write every problem as a rejection JSONL record"
    )
    validate.add_argument("--max-problems", type=int, default=1000, help="problems listed (all are counted)")
    validate.set_defaults(handler=_validate)

    convert = sub.add_parser("convert", help="convert a benchmark file into OpenIE4++ shards")
    convert.add_argument(
        "--from",
        dest="format",
        required=True,
        choices=["carb", "re-oie2016", "oie2016-conll", "oie2016-tab", "benchie"],
    )
    convert.add_argument("input", help="the benchmark file")
    convert.add_argument("--out", required=True, help="output shard folder")
    convert.add_argument("--lang", help="language code (default: inferred from the file name)")
    convert.add_argument(
        "--dataset", help="dataset name for ids and provenance (default: from the file name)"
    )
    convert.set_defaults(handler=_convert)

    from openie4pp.eval.run import BENCHMARKS

    evaluate = sub.add_parser("eval", help="score predictions on CaRB, Re-OIE2016 or BenchIE")
    evaluate.add_argument("--benchmark", required=True, choices=list(BENCHMARKS))
    evaluate.add_argument("--pred", required=True, help="CaRB tab, BenchIE system format or OpenIE4++ JSONL")
    evaluate.add_argument("--binary", action="store_true", help="binary (arg0, relation, arg1) scoring")
    evaluate.add_argument("--gold", help="gold file (default: found in the shared benchmarks folder)")
    evaluate.add_argument("--plot", metavar="PNG", help="draw the precision/recall curve")
    evaluate.add_argument("--json", action="store_true", help="print one JSON summary object last")
    evaluate.set_defaults(handler=_eval)

    from openie4pp.annotate.run import add_arguments

    annotate = sub.add_parser("annotate", help="two-stage LLM annotation into OpenIE4++ shards")
    add_arguments(annotate)
    annotate.set_defaults(handler=_annotate)

    merge = sub.add_parser(
        "merge", help="combine shard folders (e.g. from --shard runs), checking ids are unique"
    )
    merge.add_argument("inputs", nargs="+", help="shard folders")
    merge.add_argument("--out", required=True)
    merge.set_defaults(handler=_merge)

    train = sub.add_parser(
        "train", help="train a Multi2OIE tagger, MT4CrossOIE stage 1, 2 or 3 (one recipe, a stage switch)"
    )
    train.add_argument("--config", help="recipe YAML (default: train/configs/recipe.yaml values)")
    train.add_argument("--stage", type=int, choices=[1, 2, 3], help="overrides the config's stage")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=1e-4 data.max_length=64"
    )
    train.set_defaults(handler=_train)

    from openie4pp.train.extract import add_arguments as add_extract_arguments

    extract = sub.add_parser(
        "extract", help="extract tuples with a trained tagger (JSONL records or CaRB tab)"
    )
    add_extract_arguments(extract)
    extract.set_defaults(handler=_extract)

    from openie4pp.quickstart import add_arguments as add_quickstart_arguments

    quickstart = sub.add_parser(
        "quickstart",
        help="the main job offline: annotate the sample corpus, validate, train 3 stages, extract, score",
    )
    add_quickstart_arguments(quickstart)
    quickstart.set_defaults(handler=_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (FileNotFoundError, ValueError) as error:  # user errors: a message, not a traceback
        print(f"openie4pp {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
