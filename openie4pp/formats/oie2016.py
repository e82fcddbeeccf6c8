"""OIE2016 (Stanovsky & Dagan) in its two shipped forms: CoNLL word rows and the tab format.

**CoNLL** (``dev.oie.conll.txt``): a header, then one row per word,
``word_id word pred pred_id head_pred_id sent_id run_id label``, a blank line after each
*run* (one tuple). Labels are BIO over ``P`` (predicate) and ``A0``..``An`` (``A0`` is the
subject; the data goes up to ``A5``). Runs of one ``sent_id`` form one record. Labels give
exact token spans; an argument whose labels are not contiguous (the conversion flattened
some nested arguments, ~70 in dev) keeps its words as free text, ungrounded. The ``pred``
column (``might woo``) can differ from the ``P``-labelled words (``woo``): the labels win,
because they are what a tagger is trained and scored on.

**Tab** (``OIE2016_dev.txt``, ``OIE2016_test.txt``): ``sentence \\t predicate head \\t
predicate phrase \\t arg0 \\t arg1 ...``. Phrases are grounded; the head word anchors the
predicate phrase (and the arguments when the phrase itself, e.g. ``could care`` for
*could hardly care*, is not contiguous).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from openie4pp.formats.common import (
    build_record,
    check_language,
    extraction_from_phrases,
    ground_phrase,
    read_lines,
    reject,
    sentence_id,
    sentence_or_rejection,
)
from openie4pp.schema import Argument, Element, Extraction, Record, Rejection, RejectionReason, Sentence

CONLL_COLUMNS = ("word_id", "word", "pred", "pred_id", "head_pred_id", "sent_id", "run_id", "label")
_LABEL = re.compile(r"^(?:O|(P|A(?:0|[1-9][0-9]*))-(B|I))$")
_SPLIT = re.compile(r"(?:^|[_\-.])(dev|test|train|valid(?:ation)?)(?:$|[_\-.])", re.IGNORECASE)


def infer_dataset(path: Path, conll: bool) -> str:
    """``oie2016-dev`` (tab) or ``oie2016-conll-dev`` (CoNLL) from the split in the file name."""
    match = _SPLIT.search(path.name)
    base = "oie2016-conll" if conll else "oie2016"
    return f"{base}-{match.group(1).lower()}" if match else base


# --------------------------------------------------------------------------- CoNLL


@dataclass
class _Run:
    first_line: int
    sent_id: str
    rows: list[tuple[int, list[str]]] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return [row[1] for _, row in self.rows]


@dataclass
class _ConllSentence:
    sent_id: str
    words: list[str]
    first_line: int
    runs: list[_Run] = field(default_factory=list)


def read_oie2016_conll(
    path: Path, lang: str = "en", dataset: str | None = None
) -> Iterator[Record | Rejection]:
    """Records for an OIE2016 CoNLL file: one per ``sent_id`` (in order of first appearance),
    one extraction per run. A malformed run is rejected whole; its sentence's other runs stay."""
    dataset = dataset or infer_dataset(path, conll=True)
    bad_lang = check_language(lang, file=path)
    if bad_lang:
        yield bad_lang
        return
    sentences: dict[str, _ConllSentence] = {}
    for run in _runs(path):
        if isinstance(run, Rejection):
            yield run
            continue
        problem = _check_run(run)
        if problem is None:
            known = sentences.get(run.sent_id)
            if known is None:
                sentences[run.sent_id] = _ConllSentence(run.sent_id, run.words, run.first_line, [run])
                continue
            if known.words == run.words:
                known.runs.append(run)
                continue
            problem = (
                RejectionReason.schema_invalid,
                "word",
                f"the words differ from sent_id {run.sent_id}'s first run (line {known.first_line})",
                run.first_line,
            )
        reason, column, detail, line = problem
        yield reject(
            reason, detail, file=path, line=line, input="\t".join(dict(run.rows)[line]), field=column
        )

    for index, conll in enumerate(sentences.values(), start=1):
        sentence = sentence_or_rejection(
            " ".join(conll.words),
            lang,
            sentence_id(dataset, index),
            file=path,
            line=conll.first_line,
            field="word",
        )
        if isinstance(sentence, Rejection):
            yield sentence
            continue
        extractions = [_run_extraction(sentence, run) for run in conll.runs]
        yield build_record(
            sentence, extractions, dataset, file=path, line=conll.first_line, input=sentence.text
        )


def _runs(path: Path) -> Iterator[_Run | Rejection]:
    """Runs (blank-line separated blocks of word rows); rows with the wrong column count are
    rejected and make their run be skipped."""
    current: _Run | None = None
    broken = False
    lines = read_lines(path)
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.split("\t")[:1] == ["word_id"]:
            continue
        if not line.strip():
            if current is not None and not broken:
                yield current
            current, broken = None, False
            continue
        row = line.split("\t")
        if current is None:
            current = _Run(number, row[5] if len(row) == len(CONLL_COLUMNS) else "")
        if len(row) != len(CONLL_COLUMNS):
            if not broken:
                yield reject(
                    RejectionReason.schema_invalid,
                    f"expected {len(CONLL_COLUMNS)} tab-separated columns "
                    f"({' '.join(CONLL_COLUMNS)}), found {len(row)}; run skipped",
                    file=path,
                    line=number,
                    input=line,
                )
            broken = True
            continue
        current.rows.append((number, row))
    if current is not None and not broken:
        yield current


def _check_run(run: _Run) -> tuple[RejectionReason, str, str, int] | None:
    """The first problem of a run as ``(reason, column, detail, line)``, or ``None``."""
    has_predicate = False
    for position, (line, row) in enumerate(run.rows):
        word_id, word, sent_id, label = row[0], row[1], row[5], row[7]
        if word_id.strip() != str(position):
            return (
                RejectionReason.schema_invalid,
                "word_id",
                f"word_id {word_id!r}, expected {position}",
                line,
            )
        if not word or word != word.strip() or any(ch.isspace() for ch in word):
            return RejectionReason.schema_invalid, "word", f"word {word!r} is empty or holds whitespace", line
        if sent_id != run.sent_id:
            return (
                RejectionReason.schema_invalid,
                "sent_id",
                f"sent_id {sent_id!r} changes inside a run",
                line,
            )
        if not _LABEL.match(label):
            return RejectionReason.label_scheme, "label", f"label {label!r} is not O, P-B/I or An-B/I", line
        has_predicate = has_predicate or label.startswith("P-")
    if not has_predicate:
        return RejectionReason.label_scheme, "label", "the run has no P (predicate) label", run.first_line
    return None


def _run_extraction(sentence: Sentence, run: _Run) -> Extraction:
    positions: dict[str, list[int]] = {}
    for position, (_, row) in enumerate(run.rows):
        label = row[7]
        if label != "O":
            positions.setdefault(label.split("-")[0], []).append(position)
    predicate = _labelled(sentence, positions.pop("P"))
    arguments = [
        Argument(role=f"arg{int(tag[1:])}", **_labelled(sentence, tokens).model_dump())
        for tag, tokens in sorted(positions.items(), key=lambda item: int(item[0][1:]))
    ]
    return Extraction(predicate=predicate, arguments=arguments)


def _labelled(sentence: Sentence, tokens: list[int]) -> Element:
    """The element of the tokens carrying one label: a span if contiguous, else free text."""
    if tokens == list(range(tokens[0], tokens[-1] + 1)):
        return Element(text=sentence.span_text(tokens[0], tokens[-1] + 1), span=(tokens[0], tokens[-1] + 1))
    return Element(text=" ".join(sentence.tokens[t] for t in tokens), span=None)


def convert_conll(
    path: Path, lang: str | None = None, dataset: str | None = None
) -> Iterator[Record | Rejection]:
    """Registry entry point for ``oie2016-conll``."""
    return read_oie2016_conll(path, lang or "en", dataset or infer_dataset(path, conll=True))


# --------------------------------------------------------------------------- tab


def read_oie2016_tab(
    path: Path, lang: str = "en", dataset: str | None = None
) -> Iterator[Record | Rejection]:
    """Records for an OIE2016 tab file, sentences in order of first appearance."""
    dataset = dataset or infer_dataset(path, conll=False)
    bad_lang = check_language(lang, file=path)
    if bad_lang:
        yield bad_lang
        return
    tuples: dict[str, list[tuple[int, list[str]]]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            yield reject(
                RejectionReason.schema_invalid,
                f"expected 'sentence<TAB>head<TAB>predicate<TAB>arg0...', found {len(fields)} column(s)",
                file=path,
                line=number,
                input=line,
                field="predicate",
            )
            continue
        if not fields[0].strip():
            yield reject(
                RejectionReason.empty_sentence,
                "the sentence column is empty",
                file=path,
                line=number,
                input=line,
                field="sentence",
            )
            continue
        if not fields[2].strip() and not fields[1].strip():
            yield reject(
                RejectionReason.schema_invalid,
                "both the predicate head and phrase are empty",
                file=path,
                line=number,
                input=line,
                field="predicate",
            )
            continue
        tuples.setdefault(fields[0].strip(), []).append((number, fields))

    for index, (text, rows) in enumerate(tuples.items(), start=1):
        sentence = sentence_or_rejection(text, lang, sentence_id(dataset, index), file=path, line=rows[0][0])
        if isinstance(sentence, Rejection):
            yield sentence
            continue
        extractions = []
        for _, fields in rows:
            head, phrase = fields[1], fields[2] or fields[1]
            _, head_span = ground_phrase(sentence, head)
            extractions.append(
                extraction_from_phrases(
                    sentence, phrase, fields[3:], predicate_near=head_span[0] if head_span else None
                )
            )
        yield build_record(sentence, extractions, dataset, file=path, line=rows[0][0], input=text)


def convert_tab(
    path: Path, lang: str | None = None, dataset: str | None = None
) -> Iterator[Record | Rejection]:
    """Registry entry point for ``oie2016-tab``."""
    return read_oie2016_tab(path, lang or "en", dataset or infer_dataset(path, conll=False))
