"""``openie4pp extract``: run a trained Multi2OIE tagger over sentences.

Per batch of sentences (sorted by length, so padding stays small; output keeps input order):

1. tokenise the *words* of each :class:`~openie4pp.schema.Sentence` (``is_split_into_words``), so
   predictions come back per word exactly as labels went in for training (first sub-word);
2. **one encoder pass** (:meth:`Multi2OIEModel.predict_predicates`) gives the states and the
   predicate tags; word tags are decoded into predicate spans with
   :func:`openie4pp.labels.predicate_spans`;
3. the argument module runs **once for all predicates of the batch**
   (:meth:`Multi2OIEModel.predict_arguments` with ``sentence_index``), never re-encoding a sentence;
4. each predicate's argument tags become an extraction with :func:`openie4pp.labels.tags_to_extraction`.

Confidence
----------
An extraction's confidence is the **mean, over its words (predicate and arguments), of the
probability of the tag chosen for the word** (the max of the softmax at the word's first
sub-word; predicate words read the predicate head, argument words the argument head). Multi2OIE
averages the predicate score and the argument score in the same spirit; a *product* of per-word
probabilities would instead penalise long arguments, which CaRB's recall rewards. The mean keeps
confidences comparable across extraction lengths, which matters for the AUC of the PR curve.

Extractions without any argument are dropped (no scorer gives them credit); ``binary=True`` keeps
only ``arg0`` and ``arg1`` (the binary view of Re-OIE2016-Binary) and drops extractions that lose
both. Outputs: OpenIE4++ records (``source=model``, ``provenance.model`` = the model folder's
name) or CaRB's tab format ``sentence \\t confidence \\t relation \\t arg0 \\t arg1 ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from openie4pp.labels import ARG_O, PRED_O, predicate_spans, span_tags, tags_to_extraction
from openie4pp.schema import Extraction, Provenance, Record, Sentence, Source

from .batching import bridge_gaps, subword_to_word
from .data import word_starts

if TYPE_CHECKING:  # torch is imported where used, so `openie4pp --help` stays fast
    import torch

__all__ = ["Extractor", "add_arguments", "extract_main", "read_sentences", "write_records"]


def encoder_max_length(encoder: dict[str, Any]) -> int:
    """The longest input the encoder's position embeddings cover (RoBERTa-family models offset their
    positions by ``pad_token_id + 1``). Longer inputs would crash in the embedding layer, so a
    ``--max-length`` above this is clamped to it rather than failing mid-run."""
    positions = int(encoder.get("max_position_embeddings") or 512)
    if encoder.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        positions -= int(encoder.get("pad_token_id") or 1) + 1
    return positions


class Extractor:
    """A model + tokenizer pair that turns sentences into extractions (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device = "cpu",
        max_length: int = 256,
        batch_size: int = 32,
        binary: bool = False,
        name: str | None = None,
        autocast: bool = False,
    ) -> None:
        import torch

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_length = min(max_length, encoder_max_length(getattr(model.config, "encoder", None) or {}))
        self.batch_size = batch_size
        self.binary = binary
        self.name = name or Path(str(getattr(model, "name_or_path", "") or "model")).name
        self.autocast = autocast and self.device.type == "cuda"
        self.languages = list(getattr(model.config, "languages", []) or [])

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Extractor:
        """Load a folder written by ``openie4pp train`` (model, tokenizer, experts)."""
        from transformers import AutoTokenizer

        from .model import Multi2OIEModel

        model = Multi2OIEModel.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        kwargs.setdefault("name", Path(path).resolve().name)
        return cls(model, tokenizer, **kwargs)

    # -- core -----------------------------------------------------------------------------------

    def _batch(self, sentences: Sequence[Sentence]) -> list[list[Extraction]]:
        import torch

        with torch.inference_mode():
            return self._batch_inner(sentences)

    def _batch_inner(self, sentences: Sequence[Sentence]) -> list[list[Extraction]]:
        import torch

        words = [list(s.tokens) for s in sentences]
        enc = self.tokenizer(
            words,
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        input_ids = enc["input_ids"].to(self.device)
        attention_mask = enc["attention_mask"].to(self.device)
        lang_ids = None
        if self.languages and all(s.lang in self.languages for s in sentences):
            lang_ids = torch.tensor([self.languages.index(s.lang) for s in sentences], device=self.device)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else nullcontext()
        with amp:
            out = self.model.predict_predicates(input_ids, attention_mask, lang_ids=lang_ids)
        pred_probs = out.pred_probs.float()
        pred_best, pred_tag = pred_probs.max(-1)
        pred_best, pred_tag = pred_best.cpu().tolist(), pred_tag.cpu().tolist()

        starts_all, rows, masks = [], [], []
        for i, sentence in enumerate(sentences):
            word_ids = enc.word_ids(i)
            starts = word_starts(word_ids, len(sentence.tokens))
            starts_all.append(starts)
            tags = bridge_gaps(subword_to_word(pred_tag[i], starts, PRED_O), starts, PRED_O)
            for span in predicate_spans(tags):
                mask = [int(w is not None and span[0] <= w < span[1]) for w in word_ids]
                if any(mask):
                    rows.append((i, span))
                    masks.append(mask)
        results: list[list[Extraction]] = [[] for _ in sentences]
        if not rows:
            return results
        index = torch.tensor([i for i, _ in rows], device=self.device)
        pred_mask = torch.tensor(masks, device=self.device)
        with amp:
            arg_logits = self.model.predict_arguments(out.encoder_states, attention_mask, pred_mask, index)
        arg_best, arg_tag = arg_logits.float().softmax(-1).max(-1)
        arg_best, arg_tag = arg_best.cpu().tolist(), arg_tag.cpu().tolist()

        for row, (i, span) in enumerate(rows):
            sentence, starts = sentences[i], starts_all[i]
            arg_tags = bridge_gaps(subword_to_word(arg_tag[row], starts, ARG_O), starts, ARG_O)
            extraction = tags_to_extraction(sentence, span_tags(span, len(starts)), arg_tags)
            if extraction is None:
                continue
            if self.binary:
                extraction.arguments = [a for a in extraction.arguments if a.role in ("arg0", "arg1")]
            if not extraction.arguments:
                continue
            scores = [pred_best[i][starts[w]] for w in range(*span) if starts[w] >= 0]
            for argument in extraction.arguments:
                assert argument.span is not None
                scores += [arg_best[row][starts[w]] for w in range(*argument.span) if starts[w] >= 0]
            extraction.confidence = min(1.0, max(0.0, sum(scores) / len(scores))) if scores else 0.0
            results[i].append(extraction)
        return results

    def extract(self, sentences: Sequence[Sentence]) -> list[list[Extraction]]:
        """Extractions per sentence, in input order."""
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i].tokens))
        results: list[list[Extraction]] = [[] for _ in sentences]
        for begin in range(0, len(order), self.batch_size):
            chunk = order[begin : begin + self.batch_size]
            for i, extractions in zip(chunk, self._batch([sentences[i] for i in chunk]), strict=True):
                results[i] = extractions
        return results

    def records(self, sentences: Sequence[Sentence]) -> list[Record]:
        """OpenIE4++ records (``source=model``), one per sentence, extractions or not."""
        provenance = Provenance(source=Source.model, model=self.name)
        return [
            Record(sentence=s, extractions=e, provenance=provenance)
            for s, e in zip(sentences, self.extract(sentences), strict=True)
        ]


# -- input and output ---------------------------------------------------------------------------


def _json_sentence(obj: dict[str, Any], lang: str, pretokenized: bool) -> Sentence:
    if "sentence" in obj:  # an OpenIE4++ record: keep its tokenisation and id
        return Record.model_validate(obj).sentence
    if "text" not in obj:
        raise ValueError("a JSON input line needs 'text' (and optionally 'lang', 'id') or is a record")
    return Sentence.from_text(obj["text"], obj.get("lang") or lang, obj.get("id"), pretokenized)


def read_sentences(
    path: str | Path, lang: str = "en", pretokenized: bool = False, limit: int | None = None
) -> list[Sentence]:
    """Sentences from text lines, JSONL (``{text, lang, id}`` or records), a shard folder, or a benchmark
    name (``carb-dev``: its sentences exactly as the scorer's gold tokenises them); the first ``limit``."""
    from .data import BENCHMARK_SOURCES, load_records

    source = Path(path)
    if not source.exists() and str(path) in BENCHMARK_SOURCES:
        return [r.sentence for r in load_records([{"benchmark": str(path), "limit": limit}])]
    return _read_sentences(source, lang, pretokenized)[:limit]


def _read_sentences(source: Path, lang: str, pretokenized: bool) -> list[Sentence]:
    if source.is_dir():
        from openie4pp.shards import iter_records

        return [r.sentence for r in iter_records(source, strict=True) if isinstance(r, Record)]
    lines = source.read_text(encoding="utf-8").splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        return [_json_sentence(json.loads(line), lang, pretokenized) for line in lines if line.strip()]
    return [
        Sentence.from_text(line.rstrip("\r\n"), lang, None, pretokenized) for line in lines if line.strip()
    ]


def _tab_lines(records: Iterable[Record]) -> Iterator[str]:
    for record in records:
        text = record.sentence.text.replace("\t", " ")
        for extraction in record.extractions:
            relation, args = extraction.nary()
            cells = [text, f"{extraction.confidence:.6f}", relation, *args]
            yield "\t".join(c.replace("\t", " ") for c in cells) + "\n"


def write_records(records: Iterable[Record], out: TextIO, fmt: str = "jsonl") -> int:
    """Write ``records`` as OpenIE4++ JSONL or CaRB tab lines; returns the number of extractions."""
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(record.model_dump_json() + "\n")
            count += len(record.extractions)
    elif fmt == "carb-tab":
        for line in _tab_lines(records):
            out.write(line)
            count += 1
    else:
        raise ValueError(f"unknown output format {fmt!r} (jsonl or carb-tab)")
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a folder written by `openie4pp train`")
    parser.add_argument(
        "--input",
        required=True,
        help="text lines, JSONL ({text, lang, id} or records), shards, or a benchmark name (carb-dev...)",
    )
    parser.add_argument("--limit", type=int, help="the first N sentences only")
    parser.add_argument("--lang", default="en", help="language of inputs that do not say (default: en)")
    parser.add_argument("--pretokenized", action="store_true", help="split on whitespace only (benchmarks)")
    parser.add_argument("--format", choices=["jsonl", "carb-tab"], default="jsonl")
    parser.add_argument("--out", help="output file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256, help="sub-words per sentence")
    parser.add_argument("--binary", action="store_true", help="keep only arg0 and arg1")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")


def extract_main(args: argparse.Namespace) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    extractor = Extractor.from_pretrained(
        args.model, device=device, batch_size=args.batch_size, max_length=args.max_length, binary=args.binary
    )
    sentences = read_sentences(args.input, args.lang, args.pretokenized, args.limit)
    records = extractor.records(sentences)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as out:
            n = write_records(records, out, args.format)
    else:
        n = write_records(records, sys.stdout, args.format)
    print(f"{len(sentences)} sentences, {n} extractions", file=sys.stderr)
    return 0
