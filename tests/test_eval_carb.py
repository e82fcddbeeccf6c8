"""CaRB scorer: parity with the original's published numbers, an independent slow oracle, edge cases.

The oracle (``_oracle_*``) restates the original ``carb.py`` algorithm directly -- list-removal word
matching, a mutable-object binarisation, and a per-threshold sweep with an explicit greedy matching --
so the fast scorer's shortcuts (token multisets, per-sentence score matrices, range accumulation) are
checked against the plain definition on perturbed inputs.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import string
from pathlib import Path

import pytest

from openie4pp.eval.carb import (
    PREPOSITIONS,
    CarbTuple,
    binarize,
    carb_curve,
    normalize_sentence,
    read_carb_gold,
    score_carb,
)
from openie4pp.eval.curve import auc_trapezoid, best_f1_index, plot_pr
from openie4pp.eval.predictions import EvalInputError, Prediction, load_predictions, prediction_format
from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Sentence

SYSTEMS = ("openie4_test.tsv", "clausie_test.tsv")


def _reference(bench: Path) -> dict[tuple[str, str], tuple[float, float, float, float]]:
    """The 16 numbers of system_outputs/REFERENCE.md: (file, mode) -> (AUC, P, R, F1)."""
    rows = {}
    for line in (bench / "carb" / "system_outputs" / "REFERENCE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in SYSTEMS:
            rows[(cells[0], cells[1])] = tuple(float(c) for c in cells[2:])
    assert len(rows) == 4, rows
    return rows  # type: ignore[return-value]


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("mode", ["n-ary", "binary"])
def test_parity_with_reference(bench: Path, system: str, mode: str) -> None:
    auc, p, r, f1 = _reference(bench)[(system, mode)]
    result = score_carb(
        bench / "carb" / "gold_test.tsv", bench / "carb" / "system_outputs" / system, binary=mode == "binary"
    )
    ours = (result.auc, result.precision, result.recall, result.f1)
    assert ours == pytest.approx((auc, p, r, f1), abs=5e-5), f"{system} {mode}: {ours}"
    assert result.benchmark == ("carb-binary" if mode == "binary" else "carb")
    assert result.n_predictions == sum(1 for _ in (bench / "carb" / "system_outputs" / system).open())


# ---------------------------------------------------------------------------------------------------
# The oracle: the original's algorithm, restated naively.

_BE = ("be", "is", "am", "are", "was", "were", "been", "being")
_SAID = ("said", "told", "added", "adds", "says")
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


class _Ex:
    def __init__(self, rel: str, args: list[str], conf: float = 1.0):
        self.rel, self.args, self.conf = rel, args, conf


def _oracle_key(s: str) -> str:
    s = s.replace(" ", "")
    for b, e in (
        ("(", "-LRB-"),
        (")", "-RRB-"),
        ("[", "-LSB-"),
        ("]", "-RSB-"),
        ("{", "-LCB-"),
        ("}", "-RCB-"),
    ):
        s = s.replace(e, b)
    return _PUNCT.sub("", s)


def _oracle_words(gold: list[str], pred: list[str]) -> tuple[int, list[str]]:
    left = list(pred)
    hits = 0
    for w in gold:
        if w in left:
            hits += 1
            left.remove(w)
    return hits, left


def _oracle_lenient(g_rel: str, g_args: list[str], p_rel: str, p_args: list[str]) -> list[float]:
    gw, pw = g_rel.split(), p_rel.split()
    p_den, r_den = len(pw), len(gw)
    hits, left = _oracle_words(gw, pw)
    if "be" in left and any(form in gw for form in _BE):
        hits += 1
    if hits == 0:
        return [0, 0]
    p_num = r_num = hits
    for i, arg in enumerate(g_args):
        r_den += len(arg.split())
        if len(p_args) <= i:
            return [0, 0]
        p_den += len(p_args[i].split())
        k, _ = _oracle_words(arg.split(), p_args[i].split())
        p_num += k
        r_num += k
    return [p_num / p_den if p_den else 0, r_num / r_den if r_den else 0]


def _oracle_pair(g: _Ex, p: _Ex) -> list[float]:
    ga = [g.args[0], " ".join(g.args[1:])] if len(g.args) >= 2 else g.args
    pa = [p.args[0], " ".join(p.args[1:])] if len(p.args) >= 2 else p.args
    score = _oracle_lenient(g.rel, ga, p.rel, pa)
    if any(v in g.rel for v in _SAID):
        swapped = [" ".join(p.args[1:]), p.args[0]] if len(p.args) >= 2 else p.args
        score = max(score, _oracle_lenient(g.rel, ga, p.rel, swapped))
    return score


def _oracle_binarize(exs: list[_Ex]) -> list[_Ex]:
    out: list[_Ex] = []
    for ex in exs:
        temp = copy.copy(ex)  # one object, mutated and appended again for each extra argument
        temp.args = ex.args[:2]
        out.append(temp)
        for arg in ex.args[2:]:
            temp.args = [ex.args[0]]
            temp.rel = ex.rel + " " + ex.args[1]
            words = arg.split()
            if words and words[0].lower() in PREPOSITIONS:
                temp.rel += " " + words[0]
                words = words[1:]
            temp.args.append(" ".join(words))
            out.append(temp)
    return out


def _oracle_score(gold_lines: list[str], pred_lines: list[str], binary: bool) -> dict[str, object]:
    gold: dict[str, list[_Ex]] = {}
    for line in gold_lines:
        cols = line.strip().split("\t")
        gold.setdefault(cols[0].strip(), []).append(
            _Ex(cols[1].strip(), [a.strip() for a in cols[2:] if "C: " not in a])
        )
    pred: dict[str, list[_Ex]] = {}
    for line in pred_lines:
        cols = line.strip().split("\t")
        pred[cols[0]] = [*pred.get(cols[0], []), _Ex(cols[2], cols[3:], float(cols[1]))]
    g = {_oracle_key(k): v for k, v in gold.items()}
    p = {_oracle_key(k): v for k, v in pred.items()}
    if binary:
        g = {k: _oracle_binarize(v) for k, v in g.items()}
        p = {k: _oracle_binarize(v) for k, v in p.items()}
    thresholds = sorted({e.conf for v in p.values() for e in v if not math.isnan(e.conf)})
    n_gold = sum(len(v) for v in g.values())
    scores = {k: [[_oracle_pair(ge, pe) for pe in p.get(k, [])] for ge in v] for k, v in g.items()}
    curve = []
    for t in thresholds:
        p_num = p_den = r_num = 0.0
        for k, golds in g.items():
            sel = [j for j, e in enumerate(p.get(k, [])) if e.conf >= t]
            if not sel:
                continue
            m = scores[k]
            r_num += sum([max(m[i][j][1] for j in sel) for i in range(len(golds))], 0)
            rows: list[int] = []
            cols: list[int] = []
            total = 0
            for _ in range(min(len(golds), len(sel))):
                best, bi, bj = -1.0, -1, -1
                for i in range(len(golds)):
                    for j in sel:
                        if i not in rows and j not in cols and m[i][j][0] > best:
                            best, bi, bj = m[i][j][0], i, j
                rows.append(bi)
                cols.append(bj)
                total += best
            p_num += total
            p_den += len(sel)
        curve.append((t, p_num / p_den if p_den else 1.0, r_num / n_gold))
    if not curve:
        return {"auc": 0.0, "p": 0.0, "r": 0.0, "f1": 0.0, "curve": []}
    f1 = [2 * pp * rr / (pp + rr) if pp + rr else math.nan for _, pp, rr in curve]
    valid = [i for i, v in enumerate(f1) if not math.isnan(v)]
    best = max(valid, key=lambda i: (f1[i], -i)) if valid else None
    xs = [rr for _, _, rr in curve] + [0.0]
    ys = [pp for _, pp, _ in curve] + [1.0]
    area = -sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    if best is None:
        return {"auc": area, "p": 0.0, "r": 0.0, "f1": 0.0, "curve": curve}
    return {"auc": area, "p": curve[best][1], "r": curve[best][2], "f1": f1[best], "curve": curve}


# ---------------------------------------------------------------------------------------------------
# Perturbed inputs, fast scorer vs oracle.


def _perturbed(bench: Path, seed: int) -> tuple[list[str], list[str]]:
    """~40 gold sentences and a messy prediction file for them (see the body for what is messed up)."""
    rng = random.Random(seed)
    gold_lines = (bench / "carb" / "gold_test.tsv").read_text(encoding="utf-8").splitlines()
    by_sentence: dict[str, list[str]] = {}
    for line in gold_lines:
        by_sentence.setdefault(line.split("\t")[0].strip(), []).append(line)
    system = (bench / "carb" / "system_outputs" / "openie4_test.tsv").read_text(encoding="utf-8").splitlines()
    predicted = {line.split("\t")[0] for line in system}
    chosen = [s for s in by_sentence if s in predicted]
    said = [s for s in chosen if any("said" in line.split("\t")[1] for line in by_sentence[s])]
    chosen = said[:6] + rng.sample([s for s in chosen if s not in said[:6]], 34)
    gold = [line for s in chosen for line in by_sentence[s]]
    preds: list[str] = []
    for line in system:
        cols = line.split("\t")
        if cols[0] not in chosen or rng.random() < 0.2:  # dropped tuples
            continue
        if rng.random() < 0.3:  # truncated argument
            k = rng.randrange(3, len(cols))
            cols[k] = " ".join(cols[k].split()[:-1])
        cols[1] = str(round(float(cols[1]), 1))  # many tied confidences
        preds.append("\t".join(cols))
        if rng.random() < 0.1:  # duplicate line
            preds.append("\t".join(cols))
    for s in chosen[:8]:  # gold as prediction, incl. n-ary and said tuples, at random confidences
        for line in by_sentence[s]:
            cols = line.split("\t")
            preds.append("\t".join([s, str(rng.choice([0.3, 0.6, 0.95])), *cols[1:]]))
    preds.append("\t".join([chosen[0].replace(" ", "  ", 3), "0.55", "is", "x", "y"]))  # whitespace variant
    preds.append("\t".join(["An unrelated sentence .", "0.42", "is", "a", "b"]))  # not in the gold
    preds.append("\t".join([chosen[1], "nan", "is", "a", "b"]))  # NaN confidence
    rng.shuffle(preds)
    return gold, preds


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("binary", [False, True])
def test_matches_oracle_on_perturbed_predictions(
    bench: Path, tmp_path: Path, seed: int, binary: bool
) -> None:
    gold, preds = _perturbed(bench, seed)
    (tmp_path / "gold.tsv").write_text("\n".join(gold) + "\n", encoding="utf-8")
    (tmp_path / "pred.tsv").write_text("\n".join(preds) + "\n", encoding="utf-8")
    ours = score_carb(tmp_path / "gold.tsv", tmp_path / "pred.tsv", binary=binary)
    oracle = _oracle_score(gold, preds, binary)
    flat_ours = [x for r, p, t in ours.curve for x in (t, p, r)]
    assert flat_ours == pytest.approx([x for point in oracle["curve"] for x in point], abs=1e-12)
    assert (ours.auc, ours.precision, ours.recall, ours.f1) == pytest.approx(
        (oracle["auc"], oracle["p"], oracle["r"], oracle["f1"]), abs=1e-12
    )
    assert ours.details["nan_confidences"] == 1
    assert ours.details["unscored_predictions"] == 1
    assert ours.details["shadowed_predictions"] >= 1  # the earlier spelling of chosen[0] loses


def _gold_as_predictions(bench: Path) -> list[tuple[str, float, str, list[str]]]:
    gold = read_carb_gold(bench / "carb" / "gold_test.tsv")
    return [(s, 1.0, t.relation, t.args) for s, ts in gold.items() for t in ts]


@pytest.mark.parametrize("binary", [False, True])
def test_gold_as_prediction_scores_the_maximum(bench: Path, binary: bool) -> None:
    gold_path = bench / "carb" / "gold_test.tsv"
    preds = _gold_as_predictions(bench)
    best = score_carb(gold_path, preds, binary=binary)
    gold = {normalize_sentence(k): v for k, v in read_carb_gold(gold_path).items()}
    tuples = [t for ts in (binarize(gold) if binary else gold).values() for t in ts]
    unmatchable = sum(1 for t in tuples if not t.relation.split())  # an empty gold relation never matches
    ceiling = (len(tuples) - unmatchable) / len(tuples)
    assert best.precision == pytest.approx(ceiling) and best.recall == pytest.approx(ceiling)
    assert best.auc == pytest.approx(ceiling * (1 + ceiling) / 2)  # one point, then (R=0, P=1)
    for system in SYSTEMS:
        other = score_carb(gold_path, bench / "carb" / "system_outputs" / system, binary=binary)
        assert other.f1 < best.f1 and other.auc is not None and other.auc < best.auc  # type: ignore[operator]


def test_perturbations_move_scores_as_expected(bench: Path) -> None:
    gold_path = bench / "carb" / "gold_test.tsv"
    preds = _gold_as_predictions(bench)
    full = score_carb(gold_path, preds)
    halved = score_carb(gold_path, preds[::2])
    assert halved.precision == pytest.approx(full.precision, abs=0.01)  # what is left is still right...
    # ...but half the facts are missing (token recall still gives partial credit via sibling tuples)
    assert 0.5 * full.recall < halved.recall < 0.8 * full.recall
    truncated = [(s, c, r, [" ".join(a.split()[:-1]) for a in args]) for s, c, r, args in preds]
    cut = score_carb(gold_path, truncated)
    assert cut.recall < full.recall and cut.precision >= full.precision - 0.01
    doubled = score_carb(gold_path, preds + preds)
    assert doubled.recall == pytest.approx(full.recall)  # duplicates add nothing to recall...
    assert doubled.precision < 0.75  # ...and every copy counts in precision's denominator
    rng = random.Random(0)
    ranked = [(s, rng.random(), r, a) for s, _, r, a in preds]
    shuffled = [
        (s, c, r, a)
        for (s, _, r, a), c in zip(ranked, rng.sample([x[1] for x in ranked], len(ranked)), strict=True)
    ]
    one, two = score_carb(gold_path, ranked), score_carb(gold_path, shuffled)
    assert one.curve[0][:2] == pytest.approx(two.curve[0][:2])  # lowest threshold: all predictions
    assert one.auc != pytest.approx(two.auc)


def test_off_gold_sentences_only_add_thresholds(bench: Path) -> None:
    gold_path = bench / "carb" / "gold_test.tsv"
    system = bench / "carb" / "system_outputs" / "openie4_test.tsv"
    lines = system.read_text(encoding="utf-8").splitlines()
    gold_keys = {normalize_sentence(s) for s in read_carb_gold(gold_path)}
    on_gold = [line for line in lines if normalize_sentence(line.split("\t")[0]) in gold_keys]
    a, none = score_carb(gold_path, system), score_carb(gold_path, [])
    assert none.auc == 0.0 and none.f1 == 0.0 and none.curve == [] and none.threshold is None
    on = [Prediction(c[0], float(c[1]), c[2], tuple(c[3:])) for c in (line.split("\t") for line in on_gold)]
    c = score_carb(gold_path, on)
    assert len(c.curve) < len(a.curve)
    assert (c.auc, c.precision, c.recall, c.f1) == pytest.approx(
        (a.auc, a.precision, a.recall, a.f1), abs=1e-12
    )


# ---------------------------------------------------------------------------------------------------
# Small hand-computed cases.


def test_tiny_case_by_hand(tmp_path: Path) -> None:
    gold = tmp_path / "gold.tsv"
    gold.write_text("The cat is in the house .\tis in\tthe cat\tthe house\n", encoding="utf-8")
    # relation 1 of 1 predicted / 2 gold words; arg1 2/2 of 2; arg2 1 of 1 / 2 -> P 4/4, R 4/6
    result = score_carb(gold, [("The cat is in the house.", 0.5, "is", ["the cat", "house"])])
    assert (result.precision, result.recall) == pytest.approx((1.0, 2 / 3))
    assert result.f1 == pytest.approx(0.8) and result.auc == pytest.approx(2 / 3) and result.threshold == 0.5


def test_matcher_rules(tmp_path: Path) -> None:
    gold = tmp_path / "gold.tsv"
    gold.write_text("S1 .\twas born in\tHe\tParis\nS2 .\tsaid\tShe\tit rains\n", encoding="utf-8")
    # a spare predicted "be" matches "was": relation 2 of 2 predicted / 3 gold words, then He, Paris
    born = score_carb(gold, [("S1 .", 1.0, "be born", ["He", "Paris"])])
    assert born.precision == pytest.approx(4 / 4) and born.recall == pytest.approx((4 / 5) / 2)
    # said-type gold relation: swapped arguments are tried too
    said = score_carb(gold, [("S2 .", 1.0, "said", ["it rains", "She"])])
    assert said.recall == pytest.approx(0.5) and said.precision == pytest.approx(1.0)
    # a missing second argument zeroes the pair; case matters
    assert score_carb(gold, [("S1 .", 1.0, "was born in", ["He"])]).f1 == 0.0
    assert score_carb(gold, [("S1 .", 1.0, "WAS BORN IN", ["He", "Paris"])]).f1 == 0.0


def test_binarize_keeps_the_originals_aliasing() -> None:
    out = binarize({"k": [CarbTuple("r", ["a", "b", "in c", "on the d"], 0.7), CarbTuple("q", ["x"], 0.1)]})
    assert [(t.relation, t.args) for t in out["k"]] == [("r b on", ["a", "the d"])] * 3 + [("q", ["x"])]


def test_nan_confidence_is_never_selected(tmp_path: Path) -> None:
    gold = tmp_path / "gold.tsv"
    gold.write_text("A b .\tis\tA\tb\n", encoding="utf-8")
    result = score_carb(gold, [("A b .", math.nan, "is", ["A", "b"]), ("A b .", 0.2, "x", ["y", "z"])])
    assert result.recall == 0.0 and result.details["nan_confidences"] == 1 and len(result.curve) == 1


def test_curve_helpers() -> None:
    assert auc_trapezoid([1.0, 0.5, 0.0], [0.5, 0.5, 1.0]) == pytest.approx(0.25 + 0.375)
    with pytest.raises(ValueError, match="neither increasing nor decreasing"):
        auc_trapezoid([0.0, 1.0, 0.5], [1.0, 1.0, 1.0])
    f1 = [math.nan, 0.5, 0.5]
    assert best_f1_index(f1, "skip") == 1 and best_f1_index(f1, "python-max") == 0  # type: ignore[arg-type]
    assert best_f1_index([math.nan], "skip") is None  # type: ignore[arg-type]


def test_plot_pr_writes_a_png(bench: Path, tmp_path: Path) -> None:
    result = score_carb(
        bench / "carb" / "gold_test.tsv", bench / "carb" / "system_outputs" / "openie4_test.tsv"
    )
    path = plot_pr(result, tmp_path / "plots" / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_carb_curve_without_predictions() -> None:
    curve = carb_curve({"k": [CarbTuple("is", ["a", "b"])]}, {})
    assert curve.thresholds == [] and curve.auc() == 0.0 and curve.best() == (0.0, 0.0, 0.0, None)


# ---------------------------------------------------------------------------------------------------
# Readers and errors.


def test_tab_reader_semantics(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_text("\n  s one .\t0.5\trel\ta1\t\t\n\r\ns two .\t 1e-1 \tr2\n", encoding="utf-8")
    loaded = load_predictions(path)
    assert loaded.format == "tab"
    assert [(p.sentence, p.confidence, p.relation, p.args, p.line) for p in loaded.predictions] == [
        ("s one .", 0.5, "rel", ("a1",), 2),  # outer whitespace and trailing empty arguments go
        ("s two .", 0.1, "r2", (), 4),
    ]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("s .\t0.5\tr\ta\ns .\t0.5\n", 2, "expected at least 3 tab-separated columns"),
        ("s .\t0.5\tr\ta\n\ns .\thigh\tr\ta\n", 3, "confidence 'high' is not a number"),
        ("s .\t\tr\ta\n", 1, "not a number"),
    ],
)
def test_garbage_names_file_and_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    (tmp_path / "gold.tsv").write_text("s .\tr\ta\n", encoding="utf-8")
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalInputError, match=message) as info:
        score_carb(tmp_path / "gold.tsv", path)
    assert str(info.value).startswith(f"{path}:{line}: ") and info.value.line == line


def test_bad_gold_and_bad_items(tmp_path: Path) -> None:
    gold = tmp_path / "gold.tsv"
    gold.write_text("s .\tr\ta\nonly-a-sentence\n", encoding="utf-8")
    with pytest.raises(EvalInputError, match=r"gold\.tsv:2: expected at least 2"):
        score_carb(gold, [])
    gold.write_text("s .\tr\ta\n", encoding="utf-8")
    with pytest.raises(EvalInputError, match="item 1 is int"):
        score_carb(gold, [("s .", 1.0, "r", ["a"]), 7])
    (tmp_path / "bytes.tsv").write_bytes(b"s .\t1\tr\ta\n\xff\n")
    with pytest.raises(EvalInputError, match=r"bytes\.tsv:2: not valid UTF-8"):
        score_carb(gold, tmp_path / "bytes.tsv")


def _record(text: str, triples: list[tuple[str, str, str, float]]) -> Record:
    sentence = Sentence.from_text(text, "en", pretokenized=True)
    tokens = sentence.tokens

    def element(phrase: str) -> tuple[str, tuple[int, int]]:
        words = phrase.split()
        start = next(i for i in range(len(tokens)) if tokens[i : i + len(words)] == words)
        return phrase, (start, start + len(words))

    extractions = []
    for subj, rel, obj, conf in triples:
        (rt, rs), (st, ss), (ot, os_) = element(rel), element(subj), element(obj)
        extractions.append(
            Extraction(
                predicate=Element(text=rt, span=rs),
                arguments=[Argument(text=st, span=ss, role="arg0"), Argument(text=ot, span=os_, role="arg1")],
                confidence=conf,
            )
        )
    return Record(sentence=sentence, extractions=extractions, provenance=Provenance(source="model"))


def test_jsonl_records_score_like_the_same_tab_lines(tmp_path: Path) -> None:
    gold = tmp_path / "gold.tsv"
    gold.write_text("The cat sat on the mat .\tsat on\tThe cat\tthe mat\n", encoding="utf-8")
    record = _record(
        "The cat sat on the mat .", [("The cat", "sat", "the mat", 0.9), ("cat", "sat on", "mat", 0.4)]
    )
    jsonl = tmp_path / "pred.out"  # no telling suffix: detected from content
    jsonl.write_text("\n" + record.model_dump_json() + "\n", encoding="utf-8")
    tab = tmp_path / "pred.tsv"
    text = "The cat sat on the mat ."
    tab.write_text(f"{text}\t0.9\tsat\tThe cat\tthe mat\n{text}\t0.4\tsat on\tcat\tmat\n", encoding="utf-8")
    assert prediction_format(jsonl) == "jsonl" and prediction_format(tab) == "tab"
    a, b, c = score_carb(gold, jsonl), score_carb(gold, tab), score_carb(gold, [record])
    assert a.details["format"] == "jsonl"
    assert (
        (a.auc, a.precision, a.recall, a.f1)
        == (b.auc, b.precision, b.recall, b.f1)
        == (c.auc, c.precision, c.recall, c.f1)
    )
    bad = json.loads(record.model_dump_json())
    bad["extractions"][0]["confidence"] = 3
    jsonl.write_text(record.model_dump_json() + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(
        EvalInputError, match=r"pred\.out:2: invalid OpenIE4\+\+ record: extractions\.0\.confidence"
    ):
        score_carb(gold, jsonl)
