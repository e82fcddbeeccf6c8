"""Extraction: decoding is the exact inverse of the training labels, batching changes nothing, each
batch is encoded once with one argument call, and the CLI output validates and scores (both formats)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from helpers import (  # noqa: E402
    TRAIN_SOURCES,
    tiny_tokenizer,
    trained_run,
)

from openie4pp.app.cli import main  # noqa: E402
from openie4pp.labels import ARG_O, record_to_examples  # noqa: E402
from openie4pp.schema import Record  # noqa: E402
from openie4pp.train.data import load_records, word_starts  # noqa: E402
from openie4pp.train.extract import Extractor, read_sentences  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GoldTagger(torch.nn.Module):
    """A stand-in model that 'predicts' the gold tags of known sentences, at first sub-words only
    (other sub-words get confidently wrong labels, which decoding must ignore)."""

    def __init__(self, records: list[Record], tokenizer: Any) -> None:
        super().__init__()
        self.config = SimpleNamespace(languages=["en", "es", "pt"])
        self.tokenizer = tokenizer
        self.gold = {tuple(r.sentence.tokens): record_to_examples(r, extra_roles="drop") for r in records}
        self.by_ids = {
            tuple(tokenizer(list(tokens), is_split_into_words=True)["input_ids"]): result
            for tokens, result in self.gold.items()
        }
        self.calls = {"predicates": 0, "arguments": 0}

    def _lookup(self, ids: torch.Tensor) -> Any:
        return self.by_ids[tuple(ids.tolist())]

    def _logits(
        self, word_tags: list[int], word_ids: list[int | None], n_labels: int, length: int
    ) -> torch.Tensor:
        logits = torch.zeros(length, n_labels)
        logits[:, 0] = 5.0  # wrong on purpose: only first sub-words may be read
        for position, start in enumerate(word_starts(word_ids, len(word_tags))):
            if start >= 0:
                logits[start] = 0.0
                logits[start, word_tags[position]] = 5.0
        return logits

    def predict_predicates(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        self.calls["predicates"] += 1
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            result = self._lookup(ids[mask.bool()])
            word_ids = self.tokenizer(result.tokens, is_split_into_words=True).word_ids()
            rows.append(self._logits(result.pred_tags, word_ids, 3, input_ids.shape[1]))
        logits = torch.stack(rows)
        return SimpleNamespace(encoder_states=input_ids, pred_logits=logits, pred_probs=logits.softmax(-1))

    def predict_arguments(self, states: torch.Tensor, attention_mask: torch.Tensor, pred_mask: torch.Tensor,
                          index: torch.Tensor) -> torch.Tensor:  # fmt: skip
        self.calls["arguments"] += 1
        rows = []
        for row, sentence in enumerate(index.tolist()):
            result = self._lookup(states[sentence][attention_mask[sentence].bool()])
            word_ids = self.tokenizer(result.tokens, is_split_into_words=True).word_ids()
            words = sorted({word_ids[p] for p in pred_mask[row].nonzero().flatten().tolist()})
            tagged = next((t for t in result.extractions if t.pred_span == (words[0], words[-1] + 1)), None)
            tags = tagged.arg_tags if tagged else [ARG_O] * len(result.tokens)
            rows.append(self._logits(tags, word_ids, 9, states.shape[1]))
        return torch.stack(rows)


def test_decoding_inverts_the_training_labels() -> None:
    records = list(load_records(TRAIN_SOURCES))
    tokenizer = tiny_tokenizer()
    model = GoldTagger(records, tokenizer)
    extractor = Extractor(model, tokenizer, batch_size=16, max_length=512)
    predicted = extractor.records([r.sentence for r in records])
    assert model.calls == {
        "predicates": 4,
        "arguments": 4,
    }  # 64 sentences: one encoding, one argument call a batch
    assert sum(len(r.extractions) for r in predicted) > 64
    for record, output in zip(records, predicted, strict=True):
        gold = model.gold[tuple(record.sentence.tokens)]
        # predicates that are only in the all-predicate tags (their extraction did not fit) get
        # no arguments from the gold tagger, so they produce no extraction
        with_args = [t for t in gold.extractions if any(tag != ARG_O for tag in t.arg_tags)]
        expected = {(t.pred_span, tuple(t.arg_tags)) for t in with_args}
        got = set()
        for extraction in output.extractions:
            tags = [ARG_O] * len(record.sentence.tokens)
            for argument in extraction.arguments:
                start, end = argument.span
                role = int(argument.role[3:])
                tags[start:end] = [2 * role] + [2 * role + 1] * (end - start - 1)
            got.add((extraction.predicate.span, tuple(tags)))
            assert 0.9 < extraction.confidence <= 1.0
        assert got == expected, record.sentence.id


def test_batching_does_not_change_extractions() -> None:
    model_dir = trained_run() / "stage3"
    sentences = [r.sentence for r in load_records(TRAIN_SOURCES)][:24]
    one = Extractor.from_pretrained(model_dir, batch_size=1).extract(sentences)
    many = Extractor.from_pretrained(model_dir, batch_size=16).extract(sentences)
    assert sum(len(e) for e in one) > 0
    for a, b in zip(one, many, strict=True):
        assert [(x.predicate.span, [(y.role, y.span) for y in x.arguments]) for x in a] == [
            (x.predicate.span, [(y.role, y.span) for y in x.arguments]) for x in b
        ]
        assert all(abs(x.confidence - y.confidence) < 1e-4 for x, y in zip(a, b, strict=True))


def test_binary_keeps_two_arguments() -> None:
    sentences = [r.sentence for r in load_records(TRAIN_SOURCES)][:24]
    extractor = Extractor.from_pretrained(trained_run() / "stage2", binary=True)
    extractions = [x for per in extractor.extract(sentences) for x in per]
    assert extractions and all({a.role for a in x.arguments} <= {"arg0", "arg1"} for x in extractions)


def test_read_sentences_from_text_jsonl_and_records(tmp_path: Path) -> None:
    text = tmp_path / "in.txt"
    text.write_text("The cat sat on the mat.\n\nEl gato duerme.\n", encoding="utf-8")
    first, second = read_sentences(text, lang="es")
    assert first.tokens[-1] == "." and second.lang == "es"
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"text": "Der Hund bellt .", "lang": "de", "id": "x1"}) + "\n")
    (only,) = read_sentences(lines, pretokenized=True)
    assert (only.id, only.lang, only.tokens) == ("x1", "de", ["Der", "Hund", "bellt", "."])
    record = next(iter(load_records(TRAIN_SOURCES)))
    records = tmp_path / "records.jsonl"
    records.write_text(record.model_dump_json() + "\n")
    assert read_sentences(records)[0] == record.sentence


def test_cli_extract_validates_and_scores_in_both_formats(bench: Path, tmp_path: Path, capsys: Any) -> None:
    lines = (bench / "carb" / "sentences_dev.txt").read_text(encoding="utf-8").splitlines()[:30]
    source = tmp_path / "dev.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = trained_run() / "stage3"
    jsonl, tab = tmp_path / "pred.jsonl", tmp_path / "pred.tsv"
    common = ["extract", "--model", str(model), "--input", str(source), "--pretokenized", "--batch-size", "8"]
    assert main([*common, "--out", str(jsonl)]) == 0
    assert main([*common, "--format", "carb-tab", "--out", str(tab)]) == 0
    records = [Record.model_validate_json(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 30 and records[0].provenance.model == "stage3"
    n = sum(len(r.extractions) for r in records)
    assert n > 0 and len(tab.read_text().splitlines()) == n
    capsys.readouterr()
    assert main(["validate", str(jsonl), "--json"]) == 0
    scores = []
    for pred in (jsonl, tab):
        assert main(["eval", "--benchmark", "carb-dev", "--pred", str(pred), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert scores[0]["n_predictions"] == scores[1]["n_predictions"] == n
    assert abs(scores[0]["f1"] - scores[1]["f1"]) < 1e-3  # same extractions; tab rounds confidences
