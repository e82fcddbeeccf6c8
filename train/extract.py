"""The inference engine of ``openie4pp extract``: a trained Multi2OIE tagger run over sentences.

Sentences arrive as a stream (:mod:`openie4pp.sources` reads them, :mod:`.extract_io` makes them
sentences) and leave as a stream of finished batches (:mod:`.extract_job` writes and flushes each),
so memory is bounded by one window of batches and an interrupted run keeps what it finished.
Within a window of :data:`SORT_WINDOW_BATCHES` batches sentences are sorted by length (padding
stays small); output keeps input order. Per batch:

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

from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openie4pp.labels import ARG_O, PRED_O, predicate_spans, span_tags, tags_to_extraction
from openie4pp.schema import Extraction, Provenance, Record, Sentence, Source

from .batching import bridge_gaps, subword_to_word
from .extract_io import batched, iter_sentences, read_sentences, write_records
from .word_encoding import encode_words, share_pieces

if TYPE_CHECKING:  # torch is imported where used, so `openie4pp --help` stays fast
    import torch

__all__ = ["Extractor", "iter_sentences", "read_sentences", "word_tags", "write_records"]

SORT_WINDOW_BATCHES = 8
"""Batches whose sentences are sorted by length together. Sorting saves padding; a window bounds
memory and the delay before the first output line (a window must finish before its first sentence
can be written in input order)."""


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
        window_batches: int = SORT_WINDOW_BATCHES,
    ) -> None:
        import torch

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_length = min(max_length, encoder_max_length(getattr(model.config, "encoder", None) or {}))
        self.batch_size = batch_size
        self.window_batches = window_batches
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

        encodings = encode_words(self.tokenizer, [s.tokens for s in sentences], self.max_length)
        width = max(len(e.input_ids) for e in encodings)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in encodings],
                                 device=self.device)
        attention_mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids))
                                       for e in encodings], device=self.device)
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
        for i in range(len(sentences)):
            word_ids = encodings[i].word_ids + [None] * (width - len(encodings[i].word_ids))
            starts = encodings[i].starts
            starts_all.append(starts)
            tags = word_tags(pred_tag[i], starts, PRED_O)
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
            arg_tags = word_tags(arg_tag[row], starts, ARG_O)
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

    def stream(self, sentences: Iterable[Sentence]) -> Iterator[list[tuple[Sentence, list[Extraction]]]]:
        """``(sentence, extractions)`` pairs in input order, handed out after **every batch**: the
        ones that batch completed at the front of the input (so a caller can write them at once).

        Sentences are sorted by length (less padding) only within a window of
        :attr:`window_batches` batches, so the input can be a stream of any length and memory stays
        bounded by one window."""
        for window in batched(sentences, self.batch_size * self.window_batches):
            order = sorted(range(len(window)), key=lambda i: -len(window[i].tokens))
            results: list[list[Extraction] | None] = [None] * len(window)
            ready = 0
            for chunk in batched(order, self.batch_size):
                for i, extractions in zip(chunk, self._batch([window[i] for i in chunk]), strict=True):
                    results[i] = extractions
                done = ready
                while ready < len(window) and results[ready] is not None:
                    ready += 1
                yield [(window[i], results[i] or []) for i in range(done, ready)]

    def stream_records(self, sentences: Iterable[Sentence]) -> Iterator[list[Record]]:
        """:meth:`stream` as OpenIE4++ records (``source=model``), one per sentence."""
        provenance = Provenance(source=Source.model, model=self.name)
        for pairs in self.stream(sentences):
            yield [Record(sentence=s, extractions=e, provenance=provenance) for s, e in pairs]

    def extract(self, sentences: Sequence[Sentence]) -> list[list[Extraction]]:
        """Extractions per sentence, in input order."""
        return [extractions for pairs in self.stream(sentences) for _, extractions in pairs]

    def records(self, sentences: Sequence[Sentence]) -> list[Record]:
        """OpenIE4++ records (``source=model``), one per sentence, extractions or not."""
        return [record for records in self.stream_records(sentences) for record in records]


def word_tags(subword_tags: list[int], starts: list[int], o_label: int) -> list[int]:
    """Per-word tags read at each word's first sub-word; words that share a sub-word with the word
    before continue its chunk, words without one are bridged (:func:`.batching.bridge_gaps`)."""
    return bridge_gaps(share_pieces(subword_to_word(subword_tags, starts, o_label), starts, o_label),
                       starts, o_label)
