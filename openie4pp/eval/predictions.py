"""Prediction readers shared by the CaRB and Re-OIE2016 scorers.

Both scorers take the same inputs: a CaRB-style *tab* file (``sentence \\t confidence \\t relation
\\t arg1 \\t arg2 ...``, the format the original ``TabReader``/``GeneralReader`` read), a file of
OpenIE4++ JSONL records (one :class:`~openie4pp.schema.Record` per line), or an in-memory list. All
three become a list of :class:`Prediction` so the scorers never see formats.

Tab lines are parsed exactly as the original readers do, because that decides what gets scored:

* a line is ``line.strip().split("\\t")``: surrounding whitespace *and tabs* go, so trailing empty
  arguments disappear (and a leading empty sentence column would shift the columns, as originally);
* lines that are blank after ``strip()`` are skipped;
* the confidence is Python's ``float()`` of the second column (``nan``, ``inf``, ``1e-3`` accepted);
* arguments are kept verbatim (not stripped); the scorers tokenise them.

Where the original crashes (too few columns, a non-numeric confidence, undecodable bytes) we raise
:class:`EvalInputError` naming the file and line instead. Where the original silently skips a line
(Re-OIE2016's ``GeneralReader`` drops lines with fewer than four columns) the caller asks for
``skip_short=True`` and gets the skipped line numbers back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from pydantic import ValidationError

from openie4pp.errors import InputFileError
from openie4pp.schema import Record

__all__ = [
    "EvalInputError",
    "LoadedPredictions",
    "Prediction",
    "PredictionsInput",
    "load_predictions",
    "prediction_format",
    "read_jsonl",
    "read_tab",
]


class EvalInputError(InputFileError):
    """A gold or prediction file (or in-memory item) that cannot be scored, with where it went wrong.

    ``str(error)`` is ``"FILE:LINE: message"`` so the CLI can print it as is.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = self.path or "<predictions>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Prediction:
    """One extraction to score: the raw sentence text it belongs to, its confidence, relation and arguments.

    ``line`` is the 1-based line of the file it came from (None for in-memory input).
    """

    sentence: str
    confidence: float
    relation: str
    args: tuple[str, ...] = ()
    line: int | None = None


PredictionItem = Union[Prediction, Record, tuple]  # noqa: UP007 (a runtime alias; 3.10 cannot "|" a generic)
PredictionsInput = Union[str, os.PathLike, Iterable[PredictionItem]]  # noqa: UP007


@dataclass
class LoadedPredictions:
    """Predictions plus what reading them did (format, lines skipped as the original would).

    ``sentences`` are the distinct raw sentence texts the input covers, in first-seen order,
    including records without extractions: a system that found nothing in a gold sentence did
    process it, so the sentence matched, even though it yields no :class:`Prediction`.
    """

    predictions: list[Prediction]
    source: str
    format: Literal["tab", "jsonl", "memory"]
    skipped_lines: list[int] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sentences:
            self.sentences = list(dict.fromkeys(p.sentence for p in self.predictions))


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 with universal newlines (what ``open(fn)`` gave the original on Linux)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalInputError(f"cannot read file: {exc.strerror or exc}", path) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EvalInputError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path, line) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def prediction_format(path: str | os.PathLike[str]) -> Literal["tab", "jsonl"]:
    """``jsonl`` for ``.jsonl``/``.json`` files or if the first non-blank line is a JSON object, else ``tab``.

    A JSON line never holds a literal tab (JSON escapes it), while a tab line always does, so the
    first line decides unambiguously.
    """
    p = Path(path)
    if p.suffix.lower() in (".jsonl", ".json"):
        return "jsonl"
    for line in _read_text(p).split("\n"):
        if line.strip():
            return "jsonl" if line.lstrip().startswith("{") and "\t" not in line else "tab"
    return "tab"


def read_tab(
    path: str | os.PathLike[str], *, min_columns: int = 3, skip_short: bool = False
) -> tuple[list[Prediction], list[int]]:
    """Read a tab file as the original readers do; return predictions and the line numbers skipped.

    ``min_columns`` is 3 for CaRB's ``TabReader`` (sentence, confidence, relation) and 4 for
    Re-OIE2016's ``GeneralReader`` (at least one argument). Shorter non-blank lines raise
    :class:`EvalInputError` unless ``skip_short`` (then they are skipped, as ``GeneralReader`` does).
    """
    p = Path(path)
    predictions: list[Prediction] = []
    skipped: list[int] = []
    for number, raw in enumerate(_read_text(p).split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        columns = line.split("\t")
        if len(columns) < min_columns:
            if skip_short:
                skipped.append(number)
                continue
            wanted = "sentence, confidence, relation" + (", argument" if min_columns > 3 else "")
            raise EvalInputError(
                f"expected at least {min_columns} tab-separated columns ({wanted}), found {len(columns)}",
                p,
                number,
            )
        try:
            confidence = float(columns[1])
        except ValueError:
            raise EvalInputError(f"confidence {columns[1]!r} is not a number", p, number) from None
        predictions.append(Prediction(columns[0], confidence, columns[2], tuple(columns[3:]), number))
    return predictions, skipped


def _record_predictions(record: Record, line: int | None) -> list[Prediction]:
    text = record.sentence.text
    out = []
    for extraction in record.extractions:
        relation, args = extraction.nary()
        out.append(Prediction(text, float(extraction.confidence), relation, tuple(args), line))
    return out


def read_jsonl(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read OpenIE4++ records, one per line (blank lines skipped); each extraction is one prediction."""
    return _read_jsonl(path)[0]


def _read_jsonl(path: str | os.PathLike[str]) -> tuple[list[Prediction], list[str]]:
    """:func:`read_jsonl`, plus the distinct sentence texts of all records (with extractions or not)."""
    p = Path(path)
    predictions: list[Prediction] = []
    sentences: dict[str, None] = {}
    for number, line in enumerate(_read_text(p).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = Record.model_validate_json(line)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first.get("loc", ())) or "record"
            raise EvalInputError(f"invalid OpenIE4++ record: {loc}: {first.get('msg')}", p, number) from None
        except ValueError as exc:  # e.g. SchemaVersionError raised outside validation
            raise EvalInputError(f"invalid OpenIE4++ record: {exc}", p, number) from None
        sentences[record.sentence.text] = None
        predictions.extend(_record_predictions(record, number))
    return predictions, list(sentences)


def _from_item(item: object, index: int) -> list[Prediction]:
    if isinstance(item, Prediction):
        return [item]
    if isinstance(item, Record):
        return _record_predictions(item, None)
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 4:
        sentence, confidence, relation, args = item
        if isinstance(sentence, str) and isinstance(relation, str) and not isinstance(args, str):
            try:
                return [Prediction(sentence, float(confidence), relation, tuple(str(a) for a in args))]
            except (TypeError, ValueError):
                pass
    raise EvalInputError(
        f"item {index} is {type(item).__name__}; expected a Prediction, a Record or a "
        "(sentence, confidence, relation, [args]) tuple"
    )


def load_predictions(
    source: PredictionsInput, *, min_columns: int = 3, skip_short: bool = False
) -> LoadedPredictions:
    """Predictions from a path (tab or JSONL, detected) or an in-memory iterable of items.

    ``min_columns`` and ``skip_short`` apply to tab files only (see :func:`read_tab`).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise EvalInputError("no such prediction file", path)
        if prediction_format(path) == "jsonl":
            from_records, sentences = _read_jsonl(path)
            return LoadedPredictions(from_records, str(path), "jsonl", sentences=sentences)
        predictions, skipped = read_tab(path, min_columns=min_columns, skip_short=skip_short)
        return LoadedPredictions(predictions, str(path), "tab", skipped)
    out: list[Prediction] = []
    texts: dict[str, None] = {}
    for index, item in enumerate(source):
        found = _from_item(item, index)
        covered = [item.sentence.text] if isinstance(item, Record) else [p.sentence for p in found]
        texts.update(dict.fromkeys(covered))
        out.extend(found)
    return LoadedPredictions(out, "<memory>", "memory", sentences=list(texts))
