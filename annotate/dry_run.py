"""``openie4pp annotate --dry-run``: what a run would send and cost, per stage, without sending anything.

The estimate walks the run's own path: the input is read by :func:`~.run_setup.open_items` (its
problems counted, not priced), items an earlier run finished in ``OUT`` are skipped (read, never
written: no lock, no repair of a torn line), units are expanded (project mode: one per target
language), the canaries the run would plant are a row of their own, and every request is rendered
by the same prompts as the pipeline's and looked up in the response cache by its real key: an
answered one costs nothing, and its answer is followed exactly (a cached translation renders the
exact projection prompt, a cached extraction the exact judge's listing).

What depends on an answer not yet given is estimated, and the footnote says so:

* **output tokens**: the tokens of a typical answer built from the unit (extract: :data:`DEFAULT_TRIPLES`
  triples of spans of the sentence; project: the known triples; the judge: one ``accept`` per
  candidate), scaled by how the answers already in the cache compare with their own typical answers
  (billed completion tokens / estimated, per purpose, once :data:`CALIBRATION_MIN` are cached): a
  pilot run such as ``--limit 50`` or ``--shard 0/20`` calibrates the estimate of the rest;
* **extract mode's judge**: :data:`DEFAULT_TRIPLES` candidates per sentence (after a pilot: its mean),
  made of spans of the sentence, for every sentence (after a pilot: for the share of its sentences
  that had a grounded candidate);
* **project mode**: a translation not yet made counts as the English sentence times
  :data:`TRANSLATION_RATIO` (tokens of a translation per English token), and its triples as the
  known English triples at the same ratio;
* re-asks after an invalid answer and wrong-language retries are not predicted.

The request body is counted as sent with structured output (OpenAI's ``json_schema`` response
format, llama.cpp's grammar or ``json_object``, vLLM's guided decoding): the schema is not in the
prompt. ``schema_in_prompt=True`` counts it for an endpoint that has none (then it is appended to
the prompt, :func:`~.backends.append_schema_instruction`).

This module is the walk that prices the requests; the result's types and table are in
:mod:`.dry_run_report` (re-exported here), the read-only readers of ``OUT`` and of the cache in
:mod:`.dry_run_sources`.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.rejections import NOT_FINAL_REASONS
from openie4pp.schema import Sentence

from .annotator import candidate_listing
from .backends.cache import CacheReader
from .config import AnnotationConfig
from .constraints import build_constraint
from .contract import (
    AnswerInvalid,
    AnswerModel,
    AnswerTriple,
    ExtractionAnswer,
    ProjectionAnswer,
    TranslationAnswer,
    Verdict,
    VerificationAnswer,
    parse_answer,
)
from .dry_run_report import DryRunEstimate, StageEstimate
from .dry_run_sources import finished_units, open_cache
from .inputs import InputCounts, InputProblem
from .langid import is_language
from .llm import ChatRequest
from .prompts import load_prompt
from .run_setup import check_folders, open_items, resolve_canaries
from .stage2 import ground_candidates
from .token_count import TokenCounter, open_counter
from .units import OutputUnit, canary_units, input_units

__all__ = ["DEFAULT_TRIPLES", "TRANSLATION_RATIO", "DryRunEstimate", "StageEstimate", "estimate_annotation"]

DEFAULT_TRIPLES = 2
"""Triples per sentence assumed for extract mode's judge when no pilot measured it: the short
declarative sentences of OIE data state one to three facts."""
TRANSLATION_RATIO = {"de": 1.3, "es": 1.25, "pt": 1.25, "fr": 1.3, "it": 1.3, "zh": 1.2, "ja": 1.4,
                     "ar": 1.6, "ru": 1.5, "hi": 1.8}
"""Tokens of a translation per token of its English source, rough figures for today's multilingual
BPE vocabularies (longer words, inflection, non-Latin scripts); another language: 1.3."""
CALIBRATION_MIN = 3
"""Cached answers of one purpose needed before they calibrate the estimate of the answers to come."""
CALIBRATION_UNITS = 2000
"""Units of the input whose cached answers are looked at for the calibration (the first ones)."""
STRUCTURED = {"openai": "json_schema response_format (schema not in the prompt)",
              "local": "GBNF grammar / json_object (schema not in the prompt)",
              "vllm": "guided decoding (schema not in the prompt)"}


@dataclass
class _Tally:
    """A row while it is counted: expected values (a judge request expected for 80 % of the
    sentences adds 0.8), rounded once at the end."""

    requests: float = 0.0
    cached: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0


@dataclass
class _Calibration:
    """What the answers of finished units (a pilot run) say about the answers still to come."""

    pairs: dict[str, list[float]] = field(default_factory=dict)
    """Purpose -> [completion tokens billed, tokens of the typical answer estimated, answers]."""
    triples: list[int] = field(default_factory=list)
    """Triples of each cached stage-1 answer (extract mode)."""
    judged: list[bool] = field(default_factory=list)
    """Per cached stage-1 answer: whether it had a grounded candidate for the judge."""

    def add(self, purpose: str, billed: int, typical: float) -> None:
        pair = self.pairs.setdefault(purpose, [0.0, 0.0, 0])
        pair[0], pair[1], pair[2] = pair[0] + billed, pair[1] + typical, pair[2] + 1

    def factor(self, purpose: str) -> float:
        billed, typical, _ = self.pairs.get(purpose, [0.0, 0.0, 0])
        return billed / typical if self.measured(purpose) else 1.0

    def measured(self, purpose: str) -> bool:
        billed, typical, answers = self.pairs.get(purpose, [0.0, 0.0, 0])
        return answers >= CALIBRATION_MIN and typical > 0 and billed > 0

    @property
    def purposes(self) -> tuple[str, ...]:
        return tuple(sorted(p for p in self.pairs if self.measured(p)))

    @property
    def triples_mean(self) -> float | None:
        return sum(self.triples) / len(self.triples) if len(self.triples) >= CALIBRATION_MIN else None

    @property
    def verify_share(self) -> float:
        return sum(self.judged) / len(self.judged) if len(self.judged) >= CALIBRATION_MIN else 1.0



def _cache_model(config: AnnotationConfig) -> str:
    """The model name the run's cache keys hold (the embedded server's alias for ``local``)."""
    backend = config.backend
    if backend.local:
        from .backends.embedded_models import DEFAULT_MODEL, MODELS

        spec = backend.model or DEFAULT_MODEL
        if spec not in MODELS and not Path(spec).is_file():  # the run would refuse it when starting
            raise UsageError(f"--model {spec}: neither an embedded model ({', '.join(MODELS)}) "
                             "nor a GGUF file")
        return spec if spec in MODELS else Path(spec).stem
    return backend.model or ""


class _Walker:
    """Follows each unit through the pipeline's requests, pricing what the cache does not answer."""

    def __init__(self, config: AnnotationConfig, counter: TokenCounter, cache: CacheReader | None,
                 calibration: _Calibration, schema_in_prompt: bool) -> None:
        self.config, self.counter, self.cache = config, counter, cache
        self.calibration, self.schema_in_prompt = calibration, schema_in_prompt
        self.model = _cache_model(config)
        self.rows: dict[str, _Tally] = {}
        self.calibrating = False
        """Walking finished units: their cached answers calibrate, nothing is priced."""

    def _request(self, prompt_id: str, lang: str, purpose: str, **variables: Any) -> ChatRequest:
        max_tokens = self.config.pipeline.max_tokens
        return load_prompt(prompt_id).request(lang, purpose=purpose, max_tokens=max_tokens, **variables)

    def _body_tokens(self, request: ChatRequest) -> int:
        messages = [m.as_dict() for m in request.messages]
        if self.schema_in_prompt and request.schema is not None and request.constraint is None:
            from .backends import append_schema_instruction

            messages = append_schema_instruction(messages, request.schema_name, request.schema)
        return self.counter.count_chat(messages)

    def ask(self, row: str, request: ChatRequest, model: type[AnswerModel], default_output: float, *,
            weight: float = 1.0, cacheable: bool = True, extra_input: float = 0.0) -> Any:
        """Count ``request`` in ``row``: the parsed cached answer (costs nothing), or None after
        pricing it (``weight``: the share of units expected to send it)."""
        found = self.cache.lookup(request.cache_key(self.model)) if cacheable and self.cache else None
        if found is not None:
            try:
                answer = parse_answer(found.content, model)
            except AnswerInvalid:  # the run forgets it and asks again
                answer = None
            if answer is not None:
                if self.calibrating:
                    self.calibration.add(request.purpose, found.completion_tokens, default_output)
                else:
                    self.rows.setdefault(row, _Tally()).cached += 1
                return answer
        if self.calibrating:
            return None
        output = default_output * self.calibration.factor(request.purpose)
        tally = self.rows.setdefault(row, _Tally())
        tally.requests += weight
        tally.input_tokens += weight * (self._body_tokens(request) + extra_input)
        tally.output_tokens += weight * min(output, request.max_tokens)
        return None

    def _answer_tokens(self, answer: AnswerModel) -> int:
        return self.counter.count_text(answer.model_dump_json())

    def _constrained(self, request: ChatRequest, sentence: Sentence, model: type[Any],
                     items: int | None = None) -> ChatRequest:
        if self.config.pipeline.constrain != "spans":
            return request
        return replace(request, constraint=build_constraint(sentence, model, items=items))

    # ------------------------------------------------------------------ the two modes

    def extract(self, unit: OutputUnit, row: str | None) -> None:
        item = unit.item
        sentence = Sentence.from_text(item.text, item.lang, id=unit.id, pretokenized=item.pretokenized)
        request = self._constrained(self._request("extract", item.lang, "stage1", sentence=item.text),
                                    sentence, ExtractionAnswer)
        # the typical answer has DEFAULT_TRIPLES triples; a pilot measures how the real ones compare
        typical = ExtractionAnswer(triples=_span_triples(sentence, DEFAULT_TRIPLES))
        answer = self.ask(row or "extract", request, ExtractionAnswer, self._answer_tokens(typical))
        if answer is not None:
            if self.calibrating:
                self.calibration.triples.append(len(answer.triples))
            self.verify_known(row, sentence, answer.triples)
            return
        mean = self.calibration.triples_mean
        candidates = _span_triples(sentence, DEFAULT_TRIPLES if mean is None else max(1, round(mean)))
        self.verify_guess(row, sentence, candidates, self.calibration.verify_share)

    def project(self, unit: OutputUnit, row: str | None) -> None:
        item, target = unit.item, unit.lang
        ratio = TRANSLATION_RATIO.get(target.split("-")[0], 1.3)
        english = self.counter.count_text(item.text)
        sentence: Sentence | None = None
        if unit.canary is not None:
            sentence = Sentence.from_text(unit.canary.text, target, id=unit.id,
                                          pretokenized=unit.canary.pretokenized)
        else:
            request = self._request("translate", target, "translate", sentence=item.text)
            typical = self.counter.count_text(json.dumps({"translation": item.text}, ensure_ascii=False))
            answer = self.ask(row or "translate", request, TranslationAnswer, typical + (ratio - 1) * english)
            text = answer.translation.strip() if answer is not None else ""
            if text and is_language(text, target):
                sentence = Sentence.from_text(text, target, id=unit.id)
        known = [AnswerTriple(subject=t[0], relation=t[1], object=t[2] if len(t) > 2 else "",
                              extra=list(t[3:])) for t in item.triples]
        stand_in = ProjectionAnswer(triples=known)
        triple_tokens = sum(self.counter.count_text(" ".join((t.subject, t.relation, t.object, *t.extra)))
                            for t in known)
        default = self._answer_tokens(stand_in) + (ratio - 1) * triple_tokens
        variables = {"english_sentence": item.text, "english_triples": list(item.triples)}
        if sentence is not None:  # the projection prompt is known exactly
            request = self._constrained(self._request("project", target, "stage1", sentence=sentence.text,
                                                      **variables),
                                        sentence, ProjectionAnswer, max(8, len(known)))
            projection = self.ask(row or "project", request, ProjectionAnswer, default)
            if projection is not None:
                self.verify_known(row, sentence, projection.triples)
                return
            self.verify_guess(row, sentence, known, self.calibration.verify_share,
                              extra=(ratio - 1) * triple_tokens)
            return
        request = self._request("project", target, "stage1", sentence=item.text, **variables)
        self.ask(row or "project", request, ProjectionAnswer, default, cacheable=False,
                 extra_input=(ratio - 1) * english)
        guessed = Sentence.from_text(item.text, target, id=unit.id)
        self.verify_guess(row, guessed, known, self.calibration.verify_share,
                          extra=(ratio - 1) * (english + triple_tokens))

    # ------------------------------------------------------------------ the judge

    def verify_known(self, row: str | None, sentence: Sentence, triples: list[AnswerTriple]) -> None:
        """The judge's request exactly as the pipeline makes it from a cached answer."""
        grounded = [c for c in ground_candidates(sentence, triples) if c.accepted]
        if self.calibrating:
            self.calibration.judged.append(bool(grounded))
        if not self.config.pipeline.verify or not grounded:
            return
        listing = [candidate_listing(c) for c in grounded]
        self._verify(row, sentence, listing, 1.0, 0.0, cacheable=True)

    def verify_guess(self, row: str | None, sentence: Sentence, triples: list[AnswerTriple], weight: float,
                     extra: float = 0.0) -> None:
        if self.calibrating or not self.config.pipeline.verify or not triples:
            return
        listing = [{"index": i, "subject": t.subject, "relation": t.relation, "object": t.object,
                    "extra": list(t.extra)} for i, t in enumerate(triples)]
        self._verify(row, sentence, listing, weight, extra, cacheable=False)

    def _verify(self, row: str | None, sentence: Sentence, listing: list[dict[str, Any]], weight: float,
                extra: float, *, cacheable: bool) -> None:
        request = self._request("verify", sentence.lang, "verify", sentence=sentence.text,
                                candidates=json.dumps(listing, ensure_ascii=False))
        if cacheable:
            request = self._constrained(request, sentence, VerificationAnswer, len(listing))
        typical = VerificationAnswer(verdicts=[Verdict(index=c["index"], verdict="accept") for c in listing])
        self.ask(row or "verify", request, VerificationAnswer, self._answer_tokens(typical), weight=weight,
                 cacheable=cacheable, extra_input=extra)


def _span_triples(sentence: Sentence, count: int) -> list[AnswerTriple]:
    """``count`` distinct triples made of spans of ``sentence``: its first third (subject), second
    third (relation) and the rest (object), the k-th ending k tokens earlier."""
    n = len(sentence.tokens)
    if n < 2:
        return [AnswerTriple(subject=sentence.text, relation=sentence.text, object="")]
    a = max(1, n // 3)
    b = min(n, max(a + 1, 2 * n // 3))
    triples = []
    for k in range(count):
        end = n - k
        if end <= b and k:
            break
        triples.append(AnswerTriple(subject=sentence.span_text(0, a), relation=sentence.span_text(a, b),
                                    object=sentence.span_text(b, end) if end > b else ""))
    return triples


def estimate_annotation(config: AnnotationConfig, *, schema_in_prompt: bool = False) -> DryRunEstimate:
    """What ``openie4pp annotate`` with ``config`` would send and cost, sending nothing and writing
    nowhere (see the module docstring for what is exact and what is estimated)."""
    # --limit 0: the run does nothing, canaries included
    canaries = resolve_canaries(config) if config.input.limit != 0 else ()
    check_folders(config)  # the run's own refusals, before anything is counted
    counter = open_counter(config)
    cache = open_cache(config.cache_path)
    mode = config.pipeline.mode
    try:
        calibration = _Calibration()
        walker = _Walker(config, counter, cache, calibration, schema_in_prompt)
        walk = walker.extract if mode == "extract" else walker.project
        reopened = frozenset(config.pipeline.retry_failed) | NOT_FINAL_REASONS
        done = finished_units(config.out, reopened)
        if cache is not None:  # first the cached answers, finished units' included: a pilot's
            walker.calibrating = True
            pilot = input_units(open_items(config, InputCounts()), mode, config.pipeline.target_langs)
            units_seen = (u for u in pilot if isinstance(u, OutputUnit))
            for unit in itertools.chain(canary_units(canaries, mode), itertools.islice(units_seen,
                                                                                         CALIBRATION_UNITS)):
                walk(unit, None)
            walker.calibrating = False
        for unit in canary_units(canaries, mode):
            walk(unit, "canaries")
        counts, problems, finished, units, items = InputCounts(), 0, 0, 0, Counter[str]()
        for unit_or_problem in input_units(open_items(config, counts), mode, config.pipeline.target_langs):
            if isinstance(unit_or_problem, InputProblem):
                problems += 1
                continue
            items[unit_or_problem.item.id] += 1
            if unit_or_problem.id in done:
                finished += 1
                continue
            units += 1
            walk(unit_or_problem, None)
    finally:
        if cache is not None:
            cache.close()
    order = ["extract", "verify"] if mode == "extract" else ["translate", "project", "verify"]
    rows = [(name, _priced(config, walker.rows.get(name, _Tally()))) for name in order]
    if canaries:
        rows.append(("canaries", _priced(config, walker.rows.get("canaries", _Tally()))))
    backend = "vllm" if config.backend.kind == "vllm" else "local" if config.backend.local else "openai"
    structured = "schema appended to the prompt" if schema_in_prompt else STRUCTURED[backend]
    return DryRunEstimate(
        stages=tuple(rows), items=len(items), finished=finished, units=units, input_problems=problems,
        tokens=counter.name, exact_tokens=counter.exact, calibrated=calibration.purposes,
        notes=_notes(config, calibration, structured))


def _priced(config: AnnotationConfig, tally: _Tally) -> StageEstimate:
    settings = config.pipeline
    requests, tokens_in = round(tally.requests), round(tally.input_tokens)
    tokens_out = round(tally.output_tokens)
    online = (tokens_in * settings.price_in + tokens_out * settings.price_out) / 1e6
    return StageEstimate(requests, tally.cached, tokens_in, tokens_out, online,
                         online * config.execution.batch.price_factor)


def _notes(config: AnnotationConfig, calibration: _Calibration, structured: str) -> tuple[str, ...]:
    measured = ", ".join(f"{p} x{calibration.factor(p):.2f}" for p in sorted(calibration.pairs)
                         if calibration.measured(p))
    outputs = ("output tokens: a typical answer built from each sentence, "
               + (f"scaled as the cached answers compare ({measured})" if measured else
                  "uncalibrated (a pilot run, e.g. --limit 50 or --shard 0/20, calibrates them)"))
    notes = [f"request body: {structured}; cached requests cost nothing", outputs]
    if config.pipeline.mode == "extract":
        per = (f"{calibration.triples_mean:.1f} (measured)" if calibration.triples_mean is not None
               else f"{DEFAULT_TRIPLES} (default)")
        notes.append(f"judge: {per} candidates per sentence made of its spans, for "
                     f"{calibration.verify_share:.0%} of the sentences")
    else:
        notes.append("translations not yet made: the English sentence x a per-language token ratio "
                     "(de 1.3, zh 1.2, ar 1.6...); their triples: the known English ones")
    notes.append("not predicted: re-asks after invalid answers, wrong-language retries")
    prices = config.pipeline
    notes.append(f"prices: ${prices.price_in:g} in / ${prices.price_out:g} out per 1M tokens; batch x "
                 f"{config.execution.batch.price_factor:g}")
    return tuple(notes)
