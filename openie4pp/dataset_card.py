"""The Hugging Face dataset card (``README.md``) of a shard folder, written from its manifest.

A card is what a person reads before using the data, so it says what the folder holds (one split
per language), how it was made (the command lines, the model, the prompts' ids and hashes, the span
constraint) and how good it is (sentences accepted and rejected per language, the gold canaries'
precision/recall/F1), and under which licence(s). Everything comes from ``manifest.json`` (the
folder's truth, see :class:`openie4pp.shards.ShardWriter`), never from ``stats.json`` (one run's).

Importing this module is cheap (the annotation config checks ``--license`` with :func:`hub_license`);
``datasets`` and :mod:`openie4pp.hf` are imported when a card is written.

The YAML header must stay what the Hub accepts: every value we emit is one of the Hub's own
(languages from ``datasets``' ``languages.json``, sizes from its ``size_categories.json``, creators
from ``creators.json``; licence ids and task categories, which no installed package lists, in the
two documented constants below). ``tests/test_dataset_card.py`` checks each of them.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from typing import Any

from openie4pp.redact import REDACTED, looks_secret, redactor

_HUB_LICENSE_IDS = """
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl
openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 gemma
unknown other
"""
HUB_LICENSES = frozenset(_HUB_LICENSE_IDS.split())
"""The Hub's licence ids, from https://huggingface.co/docs/hub/repositories-licenses (the table in
``huggingface/hub-docs`` ``docs/hub/repositories-licenses.md``); neither ``huggingface_hub`` nor
``datasets`` ships the list. ``other`` needs ``license_name`` (and a ``license_link``)."""

_SPDX_ALIASES = {"odbl-1.0": "odbl", "odc-by-1.0": "odc-by", "pddl-1.0": "pddl", "cc0": "cc0-1.0",
                 "apache2.0": "apache-2.0", "apache-2": "apache-2.0"}

TASK_CATEGORIES = ("token-classification", "text-generation")
"""What a card declares: ``task_categories`` must be the Hub's task types (``PIPELINE_DATA`` in
https://github.com/huggingface/huggingface.js/blob/main/packages/tasks/src/pipelines.ts); there is no
Open Information Extraction one. Records ground every element as a token span of the sentence, the
data that span taggers (SpanOIE-style, ``openie4pp train``) learn as ``token-classification``; and
each sentence's tuples are what a generative extractor learns to write, ``text-generation``. No
``task_ids`` are declared: that list's token-classification subtasks (NER, part-of-speech, parsing...)
are not this task; ``tags`` name it instead."""

HUB_TASK_CATEGORIES = frozenset({"token-classification", "text-generation", "text2text-generation",
                                 "text-classification", "question-answering", "translation", "other"})
"""Task types of that list near ours (the test checks :data:`TASK_CATEGORIES` against it)."""

TAGS = ("open-information-extraction", "relation-extraction", "openie4pp")

_MACHINE_SOURCES = frozenset({"llm", "model"})


def hub_license(value: str) -> str:
    """``value`` as a Hub licence id: Hub ids and their SPDX spellings (``CC-BY-4.0``, ``MIT``,
    ``GPL-3.0-only``); a ``ValueError`` saying what to do otherwise."""
    lowered = value.strip().lower()
    for suffix in ("-only", "-or-later"):
        lowered = lowered.removesuffix(suffix)
    lowered = _SPDX_ALIASES.get(lowered, lowered)
    if lowered not in HUB_LICENSES:
        raise ValueError("not a licence id of the Hugging Face Hub (such as cc-by-4.0, mit, apache-2.0; "
                         "see https://huggingface.co/docs/hub/repositories-licenses); for another licence "
                         "give 'other' with a name and a link to its text")
    return lowered


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "100M<n<1B"


def _cell(value: Any) -> str:
    text = "–" if value in (None, "") else f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    rule = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ what the manifest records

def scrub_command(argv: Sequence[str]) -> str:
    """A command line as the manifest records it: shell-quoted (:func:`shlex.join`), every URL
    without user:password and query values, every argument that looks like a credential (and the
    value after an option that names one, ``--hf-token X``) replaced by ``REDACTED``."""
    redact, words, hide_next = redactor(()), [], False
    for arg in map(str, argv):
        if hide_next:
            words.append(REDACTED)
            hide_next = False
            continue
        clean = redact(arg)
        flag, equals, _ = clean.partition("=")
        names_secret = flag.startswith("--") and not flag.endswith("-env") and looks_secret(flag, "")
        if names_secret and equals:
            clean = f"{flag}={REDACTED}"
        elif names_secret:
            hide_next = True
        elif looks_secret("", clean):  # a key pasted as a value: keep the option's name, if any
            clean = f"{flag}={REDACTED}" if equals and flag.startswith("--") else REDACTED
        words.append(clean)
    return shlex.join(words)


def card_section(build_config: dict[str, Any] | None) -> dict[str, Any]:
    """The ``card`` section of a build config: what the build says about its data beyond settings
    (``license``..., ``source``, ``command``); every producer (annotate, convert, merge) puts it there."""
    card = (build_config or {}).get("card")
    return card if isinstance(card, dict) else {}


def license_entry(card: dict[str, Any]) -> dict[str, Any] | None:
    keys = ("license", "license_name", "license_link", "note", "source")
    entry = {key: card[key] for key in keys if card.get(key)}
    return entry if entry.get("license") else None


def without_command(build_config: dict[str, Any]) -> dict[str, Any]:
    """The build config as the manifest records it: the command line lives in ``commands``
    (scrubbed word by word; :func:`scrub_config` would drop a whole URL and keep the rest)."""
    card = build_config.get("card")
    if not isinstance(card, dict) or "command" not in card:
        return build_config
    return {**build_config, "card": {k: v for k, v in card.items() if k != "command"}}


def cover_licenses(entries: list[dict[str, Any]],
                   languages: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """``entries`` with ``languages`` filled in: an entry without them covers what no entry with
    them does (records per language); entries that cover nothing are dropped."""
    left = {lang: totals["records"] for lang, totals in languages.items()}
    for entry in entries:
        for lang, n in (entry.get("languages") or {}).items():
            left[lang] = left.get(lang, 0) - int(n)
    rest = {lang: n for lang, n in sorted(left.items()) if n > 0}
    covered = [{**e, "languages": dict(e.get("languages") or rest)} for e in entries]
    return [e for e in covered if e["languages"]]


# ------------------------------------------------------------------------------------- metadata

def card_data(manifest: dict[str, Any]) -> Any:
    """The card's YAML header as a ``huggingface_hub.DatasetCardData``."""
    import datasets
    import langcodes
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    from openie4pp.hf import features, split_name

    languages: dict[str, dict[str, int]] = manifest["languages"]
    data_files = [{"split": split_name(lang), "path": f"{lang}/shard-*.jsonl"} for lang in sorted(languages)]
    licenses, other = _license_ids(manifest)
    sources = {str(row.get("source") or "") for row in manifest.get("provenance") or ()}
    creators = sorted({"machine-generated" if s in _MACHINE_SOURCES else "expert-generated"
                       for s in sources if s})
    codes = sorted({langcodes.Language.get(lang).language or lang for lang in languages})
    card = DatasetCardData(
        language=codes or None,
        license=licenses[0] if len(licenses) == 1 else licenses,
        license_name=other.get("license_name"),
        license_link=other.get("license_link"),
        pretty_name="OpenIE4++",
        tags=list(TAGS),
        task_categories=list(TASK_CATEGORIES),
        annotations_creators=creators or None,
        multilinguality=("multilingual" if len(codes) > 1 else "monolingual") if codes else None,
        size_categories=[size_category(int(manifest["records"]))],
        configs=[{"config_name": "default", "data_files": data_files}] if data_files else None,
    )
    if data_files:
        by_lang = Counter[str]()
        for shard in manifest.get("shards") or ():
            by_lang[shard["lang"]] += int(shard["bytes"])
        splits = datasets.SplitDict()
        for lang, totals in sorted(languages.items()):
            splits.add(datasets.SplitInfo(name=split_name(lang), num_bytes=by_lang[lang],
                                          num_examples=int(totals["records"])))
        info = datasets.DatasetInfo(features=features(), splits=splits)
        DatasetInfosDict({"default": info}).to_dataset_card_data(card)
    return card


def _license_ids(manifest: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The Hub licence ids of the folder's records (``unknown`` for records no entry covers) and
    the first ``other`` entry (the header has one ``license_name``; the body lists every one)."""
    entries = manifest.get("licenses") or []
    ids = list(dict.fromkeys(str(e["license"]) for e in entries))
    if _uncovered(manifest) and "unknown" not in ids:
        ids.append("unknown")
    other: dict[str, Any] = next((e for e in entries if e.get("license") == "other"), {})
    return ids or ["unknown"], other


def _uncovered(manifest: dict[str, Any]) -> int:
    covered = sum(int(n) for e in manifest.get("licenses") or () for n in (e.get("languages") or {}).values())
    return max(int(manifest["records"]) - covered, 0)


# ----------------------------------------------------------------------------------------- body

_HEAD = """\
# OpenIE4++ dataset

Open Information Extraction tuples, one JSON object (an OpenIE4++ *record*, schema version
{schema_version}) per line, with one split per language. Written by `openie4pp`; `manifest.json`
beside this card lists every shard with its record count and sha256, and is where every number
below comes from.

{table}
Rejected inputs and candidates: {rejected} lines (in `rejected.jsonl`, not part of any split).
"""

_FIELDS = """\
## Fields

* `schema_version`: `MAJOR.MINOR` of the OpenIE4++ schema; readers refuse other major versions.
* `sentence`: `id` (stable, derived from language and text), `lang` (BCP-47 tag), `text`,
  `tokens` and `offsets` (each token's `[start, end)` character offsets into `text`).
* `extractions`: n-ary tuples, each with a `predicate` and `arguments` (in order; `role` is
  `arg0` for the subject, `arg1`... for objects, or `loc`/`temp`/`context`) and a `confidence`
  in [0, 1]. Every element has a `text` and a `span`: its token span `[start, end)` into
  `sentence.tokens`, or `[-1, -1]` when the element is not grounded in the sentence (only allowed
  for gold benchmark data, whose annotators wrote free-text phrases).
* `provenance`: where the record came from. `source` is `gold`, `llm` or `model`; `dataset`,
  `model` and `endpoint` name the origin (never credentials; `""` when not applicable);
  `prompt_id`/`prompt_hash` identify the prompt; `verdict` is the LLM judge's
  (`accept`/`fix`/`reject`); `usage` the token counts; `mode` is `extract` (annotated in the
  sentence's language) or `project` (projected from `source_lang`); `constraint` how stage 1's
  answer was span-constrained (`grammar`, `json_schema_enum`..., `none`; absent if not asked for).

## Loading

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder")     # features come from this card
# or: import openie4pp.hf; ds = openie4pp.hf.load("path/to/this/folder")
```
"""


def dataset_card(manifest: dict[str, Any]) -> str:
    """A ``README.md`` for a shard folder, from its manifest (see ``ShardWriter.manifest``).

    The YAML header's ``configs`` maps each language folder to a split and its ``dataset_info``
    declares the features and each split's size, which is what ``load_dataset(dir)`` reads."""
    from openie4pp.hf import split_name

    languages: dict[str, dict[str, int]] = manifest["languages"]
    acceptance: dict[str, dict[str, Any]] = manifest.get("acceptance") or {}
    rows = [[lang, split_name(lang), t["records"], t["extractions"], acceptance.get(lang, {}).get("rejected")]
            for lang, t in sorted(languages.items())]
    head = _HEAD.format(schema_version=manifest["schema_version"], rejected=manifest["rejected"]["records"],
                        table=_table(["language", "split", "records", "extractions", "rejected sentences"],
                                     rows, numeric_from=2))
    body = "\n".join([head, _how_made(manifest), _quality(manifest), _license(manifest), _FIELDS])
    return f"---\n{card_data(manifest).to_yaml()}\n---\n\n{body}"


def _how_made(manifest: dict[str, Any]) -> str:
    commands: list[str] = list(manifest.get("commands") or [])
    parts = ["## How the data was made\n"]
    if commands:
        parts.append("The command line(s) that wrote this folder, oldest first (credentials removed):\n\n"
                     "```bash\n" + "\n".join(commands) + "\n```\n")
    else:
        parts.append("No command line was recorded: the folder was written by a library call.\n")
    config: dict[str, Any] = manifest.get("build_config") or {}
    settings = _settings(config)
    if settings:
        parts.append("Build settings (`build_config` in `manifest.json`):\n\n"
                     + _table(["setting", "value"], settings, numeric_from=2))
    prompts: dict[str, dict[str, str]] = (config.get("card") or {}).get("prompts") or {}
    if prompts:
        parts.append("Prompt templates (`prompts/<id>.yaml` of that version; the hash covers the whole "
                     "template, its few-shot examples and language notes):\n\n"
                     + _table(["prompt", "version", "hash"],
                              [[f"`{pid}`", p.get("version"), f"`{p.get('hash')}`"]
                               for pid, p in sorted(prompts.items())], numeric_from=3))
    origin = manifest.get("provenance") or []
    if origin:
        parts.append("Records by origin (each record's `provenance`; a record's `prompt_id` joins the "
                     "templates it went through, its `prompt_hash` hashes their hashes):\n\n" + _table(
                         ["language", "source", "dataset", "model", "prompt_id", "prompt_hash", "constraint",
                          "records"],
                         [[r["lang"], r.get("source"), r.get("dataset"), r.get("model"), r.get("prompt_id"),
                           r.get("prompt_hash"), r.get("constraint"), r["records"]] for r in origin],
                         numeric_from=7))
    return "\n".join(parts)


def _settings(config: dict[str, Any]) -> list[list[Any]]:
    """The build settings a reader needs, never an endpoint's address: its kind."""
    if "backend" not in config:  # convert, merge: their few settings as they are
        return [[key, value] for key, value in config.items()
                if key != "card" and isinstance(value, (str, int, float, bool)) and value != ""]
    backend, pipeline = config.get("backend") or {}, config.get("pipeline") or {}
    endpoints = list(backend.get("endpoints") or [])
    if backend.get("kind") == "vllm":
        kind = "vLLM engine in the annotating process"
    elif endpoints == ["local"]:
        kind = "embedded llama.cpp server (`--endpoint local`)"
    else:
        kind = f"OpenAI-compatible HTTP endpoint{'s' if len(endpoints) != 1 else ''} ({len(endpoints)})"
    strict = pipeline.get("strict_verdicts")
    judge = "on, skipped candidates rejected (`--strict-verdicts`)" if strict else "on"
    if not pipeline.get("verify", True):
        judge = "off (`--no-verify`)"
    model = backend.get("model") or "the embedded default"
    rows: list[list[Any]] = [
        ["mode", pipeline.get("mode")], ["model", f"`{model}`"], ["endpoint kind", kind],
        ["execution", (config.get("execution") or {}).get("kind")],
        ["span constraint (`--constrain`)", pipeline.get("constrain")], ["LLM judge (stage 2)", judge],
        ["max tokens per answer", pipeline.get("max_tokens")]]
    if pipeline.get("mode") == "project":
        rows.insert(1, ["target languages", ", ".join(pipeline.get("target_langs") or [])])
    return rows


def _quality(manifest: dict[str, Any]) -> str:
    acceptance: dict[str, dict[str, Any]] = manifest.get("acceptance") or {}
    parts = ["## Quality\n"]
    if acceptance:
        rows = []
        for lang, a in acceptance.items():
            reasons = ", ".join(f"{reason} {n}" for reason, n in
                                Counter(a.get("rejected_by_reason") or {}).most_common(3))
            rows.append([lang, a["accepted"], a["rejected"], a.get("acceptance"), reasons])
        parts.append("Sentences accepted (a record in the split) and rejected (a sentence-level line in "
                     "`rejected.jsonl`) per language; `?`: rejections whose language is unknown:\n\n"
                     + _table(["language", "accepted", "rejected", "acceptance", "top rejection reasons"],
                              rows, numeric_from=1))
    canaries: dict[str, dict[str, Any]] = (manifest.get("quality") or {}).get("canaries") or {}
    if canaries:
        parts.append("### Scores on gold canaries\n\nGold benchmark sentences annotated with the same "
                     "prompts, model and checks as the data, then scored with the benchmark's own scorer "
                     "(they are not part of any split):\n\n" + _table(
                         ["language", "benchmark", "sentences", "accepted", "precision", "recall", "F1"],
                         [[lang, s["benchmark"], s["sentences"], s["accepted"], s["precision"], s["recall"],
                           s["f1"]] for lang, s in sorted(canaries.items())], numeric_from=2))
    elif any(r.get("source") in _MACHINE_SOURCES for r in manifest.get("provenance") or ()):
        parts.append("This build measured no canaries (gold benchmark sentences annotated and scored "
                     "like the data: `openie4pp annotate --canaries N`).\n")
    return "\n".join(parts)


def _license(manifest: dict[str, Any]) -> str:
    from openie4pp.hf import split_name

    entries = manifest.get("licenses") or []
    if not entries:
        return ("## License\n\n**TODO:** the license above is a placeholder (`unknown`). Set it from the "
                "licenses of the source sentences and the terms of the model(s) named in `provenance` "
                "(`openie4pp annotate --license ID`).\n")
    rows = [[f"`{e['license']}`" + (f" ({e['license_name']})" if e.get("license_name") else ""),
             e.get("source") or "this build",
             ", ".join(f"{split_name(lang)} ({n})" for lang, n in sorted((e.get("languages") or {}).items())),
             e.get("license_link")] for e in entries]
    parts = ["## License\n", "Which licence covers which records (splits, with their record counts):\n",
             _table(["license", "source", "splits (records)", "license text"], rows, numeric_from=4)]
    uncovered = _uncovered(manifest) + sum(int(n) for e in entries if e["license"] == "unknown"
                                           for n in (e.get("languages") or {}).values())
    if uncovered:
        parts.append(f"**TODO:** {uncovered} records have no licence on record (`unknown`): set it "
                     "before publishing (`openie4pp annotate --license ID`, `openie4pp convert --license "
                     "ID`).\n")
    parts += [f"* `{e['license']}` ({e.get('source') or 'this build'}): {e['note']}\n"
              for e in entries if e.get("note")]
    if any(r.get("source") in _MACHINE_SOURCES for r in manifest.get("provenance") or ()):
        parts.append("Machine-annotated records are also subject to the licences of their source sentences "
                     "and the terms of use of the model(s) named in their `provenance`.\n")
    return "\n".join(parts)
