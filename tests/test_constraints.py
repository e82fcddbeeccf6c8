"""Span constraints (issue 11, item 1): everything they allow grounds exactly, every span is allowed."""

from __future__ import annotations

import itertools
import json
import random
import re
import statistics
import time

import pytest

from openie4pp.annotate.constraints import build_constraint
from openie4pp.annotate.contract import (
    ExtractionAnswer,
    ProjectionAnswer,
    TranslationAnswer,
    VerificationAnswer,
    parse_answer,
)
from openie4pp.annotate.span_encodings import (
    MAX_EXTRAS,
    MAX_SPAN_TOKENS,
    MAX_TRIPLES,
    enum_schema,
    gbnf_grammar,
    json_string_body,
    span_regex,
    spans,
)
from openie4pp.errors import UsageError
from openie4pp.formats.registry import convert
from openie4pp.grounding import Grounded, ground
from openie4pp.paths import benchmarks_dir
from openie4pp.schema import Record, Sentence

HAND_WRITTEN = [
    Sentence.from_text("وُلِدَ نجيب محفوظ في القاهرة عام 1911 .", "ar"),
    Sentence.from_text("ذهب الولد إلى المدرسة، ثم عاد الولد إلى البيت.", "ar"),
    Sentence.from_text("The cat saw the cat and the cat ran , the cat said .", "en"),
    Sentence.from_text('He said "a\\b" and wrote C:\\path\\to, then left.', "en"),
    Sentence.from_text("Tabs\tand  double  spaces\nand a newline: «quoted» “curly” 'single'!", "en"),
    Sentence.from_text("鲁迅生于浙江绍兴，1881年9月25日出生。鲁迅是作家。", "zh"),
    Sentence.from_text("東京は日本の首都です。", "ja"),
    Sentence.from_text("Goethe schrieb den „Faust“ (1808) – ein Drama.", "de"),
    Sentence.from_text('x " y \\ z \\" w', "en", pretokenized=True),
    Sentence.from_text("one", "en"),
]


def _benchmark_sentences() -> list[Sentence]:
    try:
        root = benchmarks_dir()
    except UsageError:
        return []
    sources = [
        ("benchie", root / "benchie" / "benchie_gold_annotations_zh.txt", "zh", 60),
        ("benchie", root / "benchie" / "benchie_gold_annotations_de.txt", "de", 40),
        ("re-oie2016", root / "re-oie2016" / "Re-OIE2016-Spanish.json", "es", 60),
        ("re-oie2016", root / "re-oie2016" / "Re-OIE2016-Portuguese.json", "pt", 60),
        ("carb", root / "carb" / "gold_dev.tsv", "en", 60),
    ]
    out: list[Sentence] = []
    for fmt, path, lang, count in sources:
        if not path.exists():
            continue
        records = [r for r in itertools.islice(convert(fmt, path, lang), count) if isinstance(r, Record)]
        for record in records:
            out.append(record.sentence)  # the benchmark's own tokenisation
            # and as the pipeline tokenises raw text (characters for Chinese)
            out.append(Sentence.from_text(record.sentence.text, lang, id=record.sentence.id + "-raw"))
    return out


SENTENCES = HAND_WRITTEN + _benchmark_sentences()


def _span_rule_language(grammar: str, n: int) -> set[str]:
    """The strings the grammar's ``span`` rule matches (between the quotes), read off its rules
    ``s{i} ::= TOKEN ( GAP? s{i+1} )?`` with llama.cpp's literal escapes undone."""
    literal = r'"((?:[^"\\]|\\.)*)"'
    rule = re.compile(rf"^s(\d+) ::= {literal}(?: \( (?:{literal} )?s(\d+) \)\?)?$")
    parts: dict[int, tuple[str, str, int | None]] = {}
    for line in grammar.splitlines():
        match = rule.match(line)
        if match:
            index, token, gap, following = match.groups()
            parts[int(index)] = (_unescape(token), _unescape(gap or ""),
                                 int(following) if following else None)
    assert sorted(parts) == list(range(n))
    language: set[str] = set()
    for i in range(n):
        text, j = "", i
        while True:
            token, gap, following = parts[j]
            text += token
            language.add(text)
            if following is None:
                break
            assert following == j + 1
            text += gap
            j = following
    return language


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(0)
        simple = {"\\n": "\n", "\\r": "\r", "\\t": "\t", '\\"': '"', "\\\\": "\\"}
        if code in simple:
            return simple[code]
        return chr(int(code[2:], 16))
    return re.sub(r'\\(?:u[0-9a-f]{4}|U[0-9a-f]{8}|.)', one, text)


@pytest.mark.parametrize("sentence", SENTENCES, ids=lambda s: s.id[:40])
def test_every_allowed_string_grounds_exactly_and_every_span_is_allowed(sentence: Sentence) -> None:
    n = len(sentence.tokens)
    grammar = gbnf_grammar(sentence)
    allowed = _span_rule_language(grammar, n)
    every = {json_string_body(sentence.span_text(i, j)) for i, j in spans(sentence, None)}
    assert allowed == every  # the grammar allows every span of any length, and nothing else
    for body in allowed:
        phrase = json.loads(f'"{body}"')
        result = ground(sentence, phrase)
        assert isinstance(result, Grounded), (phrase, result)
        assert result.match == "exact" and result.text == phrase
    schema = enum_schema(sentence)
    capped = {sentence.span_text(i, j) for i, j in spans(sentence, MAX_SPAN_TOKENS)}
    if schema is not None:
        assert set(schema["$defs"]["span"]["enum"]) == capped


@pytest.mark.parametrize("sentence", SENTENCES[:40] + SENTENCES[-40:], ids=lambda s: s.id[:40])
def test_llama_cpp_parses_the_grammar(sentence: Sentence) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    for model in (ExtractionAnswer, ProjectionAnswer):
        llama_cpp.LlamaGrammar.from_string(gbnf_grammar(sentence, model), verbose=False)


def _render(sentence: Sentence, rng: random.Random) -> tuple[str, list[list[str]]]:
    """A random answer written as the grammar requires: keys in order, span strings, ``""`` objects."""
    every = list(spans(sentence, MAX_SPAN_TOKENS))
    triples, texts = [], []
    for _ in range(rng.randrange(0, 4)):
        subject, relation = (sentence.span_text(*rng.choice(every)) for _ in range(2))
        obj = "" if rng.random() < 0.2 else sentence.span_text(*rng.choice(every))
        extra = [sentence.span_text(*rng.choice(every)) for _ in range(rng.randrange(0, 3))]
        triples.append({"subject": subject, "relation": relation, "object": obj, "extra": extra})
        texts.append([subject, relation, obj, *extra])
    separators = rng.choice([(",", ":"), (", ", ": ")])
    return json.dumps({"triples": triples}, ensure_ascii=False, separators=separators), texts


@pytest.mark.parametrize("sentence", SENTENCES, ids=lambda s: s.id[:40])
def test_a_constrained_answer_parses_matches_the_regex_and_grounds(sentence: Sentence) -> None:
    rng = random.Random(sentence.id)
    regex = re.compile(span_regex(sentence))
    schema = enum_schema(sentence)
    for _ in range(3):
        text, elements = _render(sentence, rng)
        assert regex.fullmatch(text), text
        answer = parse_answer(text, ExtractionAnswer)
        assert len(answer.triples) == len(elements)
        for triple, expected in zip(answer.triples, elements, strict=True):
            assert [triple.subject, triple.relation, triple.object, *triple.extra] == expected
            for phrase in expected:
                if phrase:
                    result = ground(sentence, phrase)
                    assert isinstance(result, Grounded) and result.text == phrase
                    if schema is not None:
                        assert phrase in schema["$defs"]["span"]["enum"]


def test_the_regex_refuses_what_is_not_a_span() -> None:
    sentence = HAND_WRITTEN[2]
    regex = re.compile(span_regex(sentence))
    good = '{"triples":[{"subject":"The cat","relation":"saw","object":"the cat","extra":[]}]}'
    assert regex.fullmatch(good)
    assert regex.fullmatch(good.replace('"The cat"', '"cat saw the"'))  # a span, in any position
    for bad in ("The ca", "the dog", " cat", "The  cat"):
        assert not regex.fullmatch(good.replace('"The cat"', json.dumps(bad))), bad
    assert regex.fullmatch('{"triples":[]}')


def test_answers_are_bounded_so_they_end_within_max_tokens() -> None:
    """Unbounded, a small model under the grammar wrote triples until max_tokens cut the JSON off
    (4 of 5 answers of Gemma 3 270M); at most MAX_TRIPLES triples of MAX_EXTRAS extras each."""
    sentence = HAND_WRITTEN[2]
    regex = re.compile(span_regex(sentence))

    def answer(triples: int, extras: int) -> str:
        triple = {"subject": "The cat", "relation": "saw", "object": "the cat", "extra": ["saw"] * extras}
        return json.dumps({"triples": [triple] * triples}, separators=(",", ":"))

    assert regex.fullmatch(answer(MAX_TRIPLES, MAX_EXTRAS))
    assert not regex.fullmatch(answer(MAX_TRIPLES + 1, 0))
    assert not regex.fullmatch(answer(1, MAX_EXTRAS + 1))
    grammar = gbnf_grammar(sentence)
    assert f'( ws "," ws triple ){{0,{MAX_TRIPLES - 1}}}' in grammar
    assert f'( ws "," ws span ){{0,{MAX_EXTRAS - 1}}}' in grammar
    schema = enum_schema(sentence)
    assert schema is not None and schema["properties"]["triples"]["maxItems"] == MAX_TRIPLES
    assert schema["$defs"]["triple"]["properties"]["extra"]["maxItems"] == MAX_EXTRAS


def _verdicts(sentence: Sentence, rng: random.Random) -> tuple[str, list[list[str]]]:
    """A random judge answer as the grammar requires: accept/reject with ``"fixed": null``, fix with
    a triple of spans, reasons with quotes and backslashes."""
    every = list(spans(sentence, MAX_SPAN_TOKENS))
    verdicts, fixes = [], []
    for index in range(rng.randrange(1, 4)):
        kind = rng.choice(["accept", "reject", "fix"])
        fixed = None
        if kind == "fix":
            subject, relation = (sentence.span_text(*rng.choice(every)) for _ in range(2))
            fixed = {"subject": subject, "relation": relation, "object": "", "extra": []}
            fixes.append([subject, relation])
        reason = "" if kind == "accept" else rng.choice(["", 'a "quote"', "a \\ b"])
        verdicts.append({"index": index, "verdict": kind, "reason": reason, "fixed": fixed})
    return json.dumps({"verdicts": verdicts}, ensure_ascii=False, separators=(",", ":")), fixes


@pytest.mark.parametrize("sentence", SENTENCES[::7], ids=lambda s: s.id[:40])
def test_a_judges_fix_can_only_be_made_of_spans(sentence: Sentence) -> None:
    """Issue 11: the judge's ``fixed`` triple is constrained like stage 1's, and the encodings
    keep the verdict's own rule: ``fix`` carries a triple, ``accept``/``reject`` carry ``null``."""
    rng = random.Random(sentence.id)
    regex = re.compile(span_regex(sentence, VerificationAnswer))
    constraint = build_constraint(sentence, VerificationAnswer)
    for _ in range(3):
        text, fixes = _verdicts(sentence, rng)
        assert regex.fullmatch(text), text
        answer = parse_answer(text, VerificationAnswer)
        assert [[v.fixed.subject, v.fixed.relation] for v in answer.verdicts if v.fixed] == fixes
        assert constraint.violations(text) == []
    good = '{"verdicts":[{"index":0,"verdict":"accept","reason":"","fixed":null}]}'
    assert regex.fullmatch(good)
    assert not regex.fullmatch(good.replace('"accept"', '"fix"'))  # a fix needs its triple
    assert regex.fullmatch(good.replace('"accept"', '"reject"').replace('""', '"wrong"'))
    assert not regex.fullmatch(good.replace('"reason":""', '"reason":"fine"'))  # an accept has none
    bad_fix = ('{"verdicts":[{"index":0,"verdict":"fix","reason":"","fixed":{"subject":"not in it",'
               '"relation":"x","object":"","extra":[]}}]}')
    assert not regex.fullmatch(bad_fix)
    assert "not in it" in (constraint.violations(bad_fix) or [])
    schema = enum_schema(sentence, VerificationAnswer)
    if schema is not None:
        fixed = schema["$defs"]["verdict"]["properties"]["fixed"]["anyOf"]
        assert {"$ref": "#/$defs/triple"} in fixed and {"type": "null"} in fixed


def test_llama_cpp_parses_the_judge_grammar() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    for sentence in HAND_WRITTEN:
        llama_cpp.LlamaGrammar.from_string(gbnf_grammar(sentence, VerificationAnswer), verbose=False)


def test_enum_schema_is_strict_shaped_and_falls_back_to_none_when_too_big() -> None:
    small = enum_schema(HAND_WRITTEN[0])
    assert small is not None
    assert small["additionalProperties"] is False
    triple = small["$defs"]["triple"]
    assert triple["required"] == ["subject", "relation", "object", "extra"]
    long = Sentence.from_text(" ".join(f"word{i}" for i in range(200)), "en")
    assert enum_schema(long) is None
    assert enum_schema(HAND_WRITTEN[0], max_values=3) is None
    assert enum_schema(HAND_WRITTEN[0], max_chars=10) is None


def test_only_span_answers_can_be_constrained() -> None:
    with pytest.raises(ValueError, match="TranslationAnswer"):
        gbnf_grammar(HAND_WRITTEN[0], TranslationAnswer)


def test_constraint_digest_differs_per_sentence_and_is_stable() -> None:
    a, b = build_constraint(HAND_WRITTEN[0]), build_constraint(HAND_WRITTEN[1])
    assert a.digest != b.digest and a.digest == build_constraint(HAND_WRITTEN[0]).digest


def test_grammar_is_linear_and_fast_over_the_benchmarks() -> None:
    """Measured, not asserted tightly: the numbers go into the report (``-s`` prints them)."""
    benchmark = [s for s in SENTENCES if s not in HAND_WRITTEN] or HAND_WRITTEN
    times, sizes, ratio = [], [], []
    for sentence in benchmark:
        start = time.perf_counter()
        grammar = gbnf_grammar(sentence)
        times.append(time.perf_counter() - start)
        sizes.append(len(grammar.encode("utf-8")))
        ratio.append(sizes[-1] / len(sentence.text.encode("utf-8")))
    print(f"\ngbnf over {len(benchmark)} sentences: median build {statistics.median(times) * 1e6:.0f} us, "
          f"median size {statistics.median(sizes)} B, max {max(sizes)} B, "
          f"max size/sentence-bytes {max(ratio):.1f}")
    assert max(ratio) < 60  # linear: a constant number of bytes per sentence byte
    assert statistics.median(times) < 0.01


def test_every_span_grounds_through_the_pipelines_normalisation_in_pretokenised_text() -> None:
    """Found by a gold canary: stage 2 normalises a phrase before grounding it, and normalising cut
    the period off "George Bluth Sr." — a span of the pre-tokenised Re-OIE2016 sentence, whose
    token is "Sr." — so an answer the grammar allowed was rejected as ungrounded (partial_token).
    Every span the constraint allows must survive the pipeline's own grounding, not only ``ground``."""
    from openie4pp.annotate.contract import AnswerTriple
    from openie4pp.annotate.stage2 import ground_triple
    from openie4pp.schema import Extraction

    text = ("George Bluth Sr. , patriarca de la familia Bluth , es el fundador y ex CEO de la Compañía "
            "Bluth que comercializa y construye mini-mansiones , entre muchas otras actividades .")
    sentence = Sentence.from_text(text, "es", pretokenized=True)
    relation = sentence.span_text(10, 13)  # "es el fundador"
    failures = []
    for start, end in spans(sentence, 6):
        if start < 13 and end > 10:
            continue  # would overlap the relation
        subject = sentence.span_text(start, end)
        if not any(c.isalnum() for c in subject):
            continue  # punctuation alone is not an argument
        triple = AnswerTriple(subject=subject, relation=relation, object="", extra=[])
        result = ground_triple(sentence, triple)
        if not isinstance(result, Extraction):
            failures.append((subject, result))
    assert failures == []
