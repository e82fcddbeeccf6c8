"""Re-OIE2016 scorer: hand-computed cases, a slow oracle of the OIE2016 lexical protocol, gold maxima."""

from __future__ import annotations

import json
import math
import random
import re
import string
from pathlib import Path

import pytest

from openie4pp.eval.carb import score_carb
from openie4pp.eval.curve import auc_unique_recall, ranking_pr_curve
from openie4pp.eval.predictions import EvalInputError
from openie4pp.eval.reoie2016 import read_reoie2016_gold, score_reoie2016

GOLDS = (
    "Re-OIE2016.json",
    "Re-OIE2016-Binary.json",
    "Re-OIE2016-Spanish.json",
    "Re-OIE2016-Spanish-Binary.json",
    "Re-OIE2016-Portuguese.json",
    "Re-OIE2016-Portuguese-Binary.json",
)
SLOTS = ("arg0", "arg1", "arg2", "arg3", "temp", "loc", "context")


def _tuple(pred: str, *args: str, **named: str) -> dict[str, object]:
    t: dict[str, object] = {"pred": pred, "pred_index": []}
    for slot in SLOTS:
        t[slot] = named.get(slot, args[SLOTS.index(slot)] if SLOTS.index(slot) < len(args) else "")
        t[f"{slot}_index"] = []
    return t


def _write_gold(path: Path, data: dict[str, list[dict[str, object]]]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_tiny_lexical_case_by_hand(tmp_path: Path) -> None:
    gold = _write_gold(
        tmp_path / "Re-OIE2016.json",
        {
            "The cat sat on the mat .": [
                _tuple("sat", "The cat", "on the mat"),
                _tuple("<be>", "the mat", "soft"),
            ],
            "Dogs bark loudly .": [_tuple("bark", "Dogs"), _tuple("bark loudly", "Dogs")],
        },
    )
    preds = [
        ("The cat sat on the mat .", 0.9, "sat", ["The cat", "on the mat"]),  # matches the first tuple
        ("The cat sat on the mat .", 0.4, "sits", ["a dog"]),  # matches nothing
        ("Dogs bark loudly .", 0.8, "bark", []),  # no argument: dropped, as GeneralReader drops it
    ]
    result = score_reoie2016(gold, preds)
    # the unpredicted 2-tuple sentence adds 2*2 to the recall denominator: 2 + 4 = 6 gold "tuples"
    assert result.details["correct_total"] == 6 and result.details["matched"] == 1
    assert result.details["dropped_without_arguments"] == 1
    # thresholds 0.4 (P 1/2, R 1/6) and 0.9 (P 1, R 1/6): best F1 = 2/7 at 0.9; AUC = 1/6 (closing point)
    assert (result.precision, result.recall, result.f1) == pytest.approx((1.0, 1 / 6, 2 / 7))
    assert result.threshold == 0.9 and result.auc == pytest.approx(1 / 6)
    assert [x for point in result.curve for x in point] == pytest.approx([1 / 6, 0.5, 0.4, 1 / 6, 1.0, 0.9])
    assert result.benchmark == "re-oie2016-en"
    # as the original does: a second spelling of a sentence (same key) replaces the first one's predictions
    respelled = [("The cat sat on the mat.", *preds[0][1:]), *preds[1:]]
    shadowed = score_reoie2016(gold, respelled)
    assert shadowed.details["shadowed_predictions"] == 1 and shadowed.details["matched"] == 0


def test_lexical_match_counts_word_pairs(tmp_path: Path) -> None:
    gold = _write_gold(tmp_path / "g.json", {"A a b c d .": [_tuple("is", "a a b", "c d")]})
    # gold words: is a a b c d (6); predicted "x a a": 2 x 2 equal pairs = 4 > 3 -> match
    assert score_reoie2016(gold, [("A a b c d .", 1.0, "x", ["a a"])]).f1 == 1.0
    assert score_reoie2016(gold, [("A a b c d .", 1.0, "x", ["a"])]).f1 == 0.0  # 2 pairs = 1/3
    assert score_reoie2016(gold, [("A a b c d .", 1.0, "IS", ["A", "B C"])]).f1 == 0.0  # case-sensitive


def test_relabel_and_slot_order(tmp_path: Path) -> None:
    path = _write_gold(
        tmp_path / "Re-OIE2016-Spanish.json",
        {
            "s": [
                _tuple("<be>", "x", "y", temp="ayer", loc="aquí", context="dijo"),
                _tuple("<be> named", "", "b"),
            ]
        },
    )
    nary = read_reoie2016_gold(path)["s"]
    assert [(t.relation, t.args) for t in nary] == [("[is]", ["x", "y", "ayer", "aquí"]), ("named", ["b"])]
    assert [t.args for t in read_reoie2016_gold(path, binary=True)["s"]] == [["x", "y"], ["b"]]


def test_tuple_protocol_uses_mt4crossoie_auc(tmp_path: Path) -> None:
    tuples = [("is", "a", "b"), ("has", "c", "d")]
    json_gold = _write_gold(tmp_path / "Re-OIE2016-Binary.json", {"a b c d .": [_tuple(*t) for t in tuples]})
    tsv_gold = tmp_path / "gold.tsv"
    tsv_gold.write_text("".join(f"a b c d .\t{r}\t{a}\t{b}\n" for r, a, b in tuples), encoding="utf-8")
    preds = [
        ("a b c d .", 0.9, "is", ["a", "b"]),
        ("a b c d .", 0.5, "zz", ["q", "r"]),
        ("a b c d .", 0.2, "has", ["c", "d"]),
    ]
    # points (R, P): (1, 2/3) @0.2, (0.5, 0.5) @0.5, (0.5, 1) @0.9, then (0, 1)
    carb = score_carb(tsv_gold, preds)
    assert carb.auc == pytest.approx(0.5 * (2 / 3 + 0.5) / 2 + 0.5)
    ours = score_reoie2016(json_gold, preds, binary=True)
    assert ours.details["matcher"] == "binary_linient_tuple_match"
    assert ours.auc == pytest.approx(0.5 + 0.5 * (1 + 2 / 3) / 2)  # one point per recall, the last precision
    assert (ours.precision, ours.recall, ours.f1, ours.threshold) == pytest.approx((2 / 3, 1.0, 0.8, 0.2))
    assert (carb.precision, carb.recall, carb.f1) == (ours.precision, ours.recall, ours.f1)


def test_tuple_protocol_agrees_with_carb_on_real_data(bench: Path, tmp_path: Path) -> None:
    gold = read_reoie2016_gold(bench / "re-oie2016" / "Re-OIE2016-Binary.json")
    tsv = tmp_path / "gold.tsv"
    # an empty relation never matches; CaRB's reader needs a non-empty column, so use a token no one predicts
    rows = ["\t".join([s, t.relation or "\u22a5", *t.args]) for s, ts in gold.items() for t in ts]
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    system = bench / "carb" / "system_outputs" / "openie4_test.tsv"
    binary_preds = [line.split("\t")[:5] for line in system.read_text(encoding="utf-8").splitlines()]
    cut = tmp_path / "cut.tsv"
    cut.write_text("".join("\t".join(cols) + "\n" for cols in binary_preds), encoding="utf-8")
    carb = score_carb(tsv, cut)
    ours = score_reoie2016(bench / "re-oie2016" / "Re-OIE2016-Binary.json", system, binary=True)
    assert (ours.precision, ours.recall, ours.f1) == (carb.precision, carb.recall, carb.f1)
    recall, precision = [r for r, _, _ in carb.curve] + [0.0], [p for _, p, _ in carb.curve] + [1.0]
    assert ours.auc == pytest.approx(auc_unique_recall(recall, precision), abs=1e-12)
    assert ours.auc != pytest.approx(carb.auc, abs=1e-6)


# ---------------------------------------------------------------------------------------------------
# Oracle for the lexical protocol, on CaRB's system outputs (they cover ~570 Re-OIE2016 sentences).

_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


def _key(s: str) -> str:
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


def _oracle_lexical(gold_path: Path, pred_lines: list[str]) -> tuple[float, float, float, float]:
    data = json.loads(gold_path.read_text(encoding="utf-8"))
    gold = {}
    for sentence, tuples in data.items():
        rows = []
        for t in tuples:
            rel = "[is]" if t["pred"].strip() == "<be>" else t["pred"].replace("<be> ", "")
            rows.append(
                " ".join([rel] + [t[k] for k in ("arg0", "arg1", "arg2", "arg3", "temp", "loc") if t[k]])
            )
        gold[_key(sentence)] = rows
    pred: dict[str, list[list[object]]] = {}
    for line in pred_lines:
        cols = line.strip().split("\t")
        if len(cols) >= 4:
            pred.setdefault(cols[0], []).append([" ".join([cols[2], *cols[3:]]), float(cols[1]), False])
    pred = {_key(k): v for k, v in pred.items()}
    labels, scores, total, unmatched = [], [], 0, 0
    for key, rows in gold.items():
        if key not in pred:
            total += len(rows) ** 2
            unmatched += len(rows) ** 2
            continue
        for row in rows:
            total += 1
            ref = row.split(" ")
            for p in pred[key]:
                if p[2]:
                    continue
                hits = sum(1 for a in ref for b in str(p[0]).split(" ") if a == b)
                if hits / len(ref) > 0.5:
                    labels.append(1)
                    scores.append(p[1])
                    p[2] = True
                    break
            else:
                unmatched += 1
        for p in pred[key]:
            if not p[2]:
                labels.append(0)
                scores.append(p[1])
    scores = [s if math.isfinite(s) else 0.0 for s in scores]  # type: ignore[arg-type]
    points = []
    for t in sorted(set(scores)):
        tp = sum(y for y, s in zip(labels, scores, strict=True) if s >= t)
        n = sum(1 for s in scores if s >= t)
        points.append((tp / n, tp / total, t))
    f1 = [2 * p * r / (p + r) if p + r else math.nan for p, r, _ in points]
    best = 0
    for i in range(1, len(points)):
        if f1[i] > f1[best]:
            best = i
    xs = [r for _, r, _ in points] + [0.0]
    ys = [p for p, _, _ in points] + [1.0]
    auc = -sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return auc, points[best][0], points[best][1], f1[best]


def _messy_predictions(bench: Path, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for name in ("openie4_test.tsv", "clausie_test.tsv"):
        for line in (bench / "carb" / "system_outputs" / name).read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            if rng.random() < 0.5:  # dropped tuples (and keeps the test fast)
                continue
            if rng.random() < 0.3:  # truncated argument
                k = rng.randrange(3, len(cols))
                cols[k] = " ".join(cols[k].split()[: max(0, len(cols[k].split()) // 2)])
            cols[1] = str(
                round(
                    1 / (1 + math.exp(-float(cols[1]))) if name == "clausie_test.tsv" else float(cols[1]), 2
                )
            )
            out.append("\t".join(cols))
            if rng.random() < 0.05:
                out.append("\t".join(cols))  # duplicate
    first = "Few people in the advertising business have raised as many hackles as Alvin A. Achenbaum ."
    out += ["s without args .\t0.3\tis", f"{first}\tnan\thave raised\tx", f"{first}\t-inf\tr\ta"]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_lexical_matches_oracle_on_perturbed_predictions(bench: Path, tmp_path: Path, seed: int) -> None:
    gold = bench / "re-oie2016" / "Re-OIE2016.json"
    lines = _messy_predictions(bench, seed)
    path = tmp_path / "pred.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = score_reoie2016(gold, path)
    assert (ours.auc, ours.precision, ours.recall, ours.f1) == pytest.approx(
        _oracle_lexical(gold, lines), abs=1e-12
    )
    assert ours.details["skipped_lines"] and ours.details["non_finite_confidences"] == 2


@pytest.mark.parametrize("name", GOLDS)
def test_gold_as_prediction_scores_the_maximum(bench: Path, name: str) -> None:
    path = bench / "re-oie2016" / name
    binary = "Binary" in name
    gold = read_reoie2016_gold(path, binary=binary)
    preds = [(s, 1.0, t.relation, t.args) for s, ts in gold.items() for t in ts]
    for matcher in ("lexical", "tuple"):
        best = score_reoie2016(path, preds, binary=binary, matcher=matcher)  # type: ignore[arg-type]
        assert best.precision >= 0.995 and best.recall >= 0.995 and best.auc >= 0.99  # type: ignore[operator]
        rng = random.Random(0)
        dropped = score_reoie2016(
            path, [p for p in preds if rng.random() < 0.7], binary=binary, matcher=matcher
        )  # type: ignore[arg-type]
        assert dropped.recall < best.recall - 0.15 and dropped.f1 < best.f1
        halved = [
            (s, c, r, [" ".join(a.split()[: len(a.split()) // 2]) for a in args]) for s, c, r, args in preds
        ]
        assert score_reoie2016(path, halved, binary=binary, matcher=matcher).f1 < best.f1  # type: ignore[arg-type]
    lexical = score_reoie2016(path, preds, binary=binary, matcher="lexical")
    assert (
        lexical.precision == 1.0
    )  # no prediction can be wrong; the few argument-less gold tuples are unreachable
    assert (
        lexical.details["matched"]
        == lexical.details["correct_total"] - lexical.details["dropped_without_arguments"]
    )


def test_shuffled_confidences_keep_the_full_recall_point(bench: Path) -> None:
    gold = bench / "re-oie2016" / "Re-OIE2016.json"
    lines = (bench / "carb" / "system_outputs" / "openie4_test.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines]
    confs = [c[1] for c in rows]
    random.Random(5).shuffle(confs)
    shuffled = [(c[0], float(k), c[2], c[3:]) for c, k in zip(rows, confs, strict=True)]
    a = score_reoie2016(gold, [(c[0], float(c[1]), c[2], c[3:]) for c in rows])
    b = score_reoie2016(gold, shuffled)
    assert a.curve[0][:2] == pytest.approx(b.curve[0][:2]) and a.auc > b.auc


def test_ranking_curve_matches_sklearn_definition() -> None:
    precision, recall, thresholds = ranking_pr_curve([1, 0, 1, 1, 0], [0.9, 0.8, 0.8, 0.3, 0.1])
    assert thresholds.tolist() == [0.1, 0.3, 0.8, 0.9]
    assert precision.tolist() == pytest.approx([3 / 5, 3 / 4, 2 / 3, 1.0, 1.0])
    assert recall.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 0.0])


def test_reader_errors_and_skips(tmp_path: Path) -> None:
    gold = _write_gold(tmp_path / "g.json", {"s .": [_tuple("is", "a", "b")]})
    path = tmp_path / "p.tsv"
    path.write_text("s .\t0.5\tis\ta\tb\ns .\t0.5\tis\ns .\tmaybe\tis\ta\n", encoding="utf-8")
    with pytest.raises(EvalInputError, match=r"p\.tsv:3: confidence 'maybe' is not a number"):
        score_reoie2016(gold, path)
    path.write_text("s .\t0.5\tis\ta\tb\ns .\t0.5\tis\ns .\n", encoding="utf-8")
    assert score_reoie2016(gold, path).details["skipped_lines"] == [2, 3]  # GeneralReader: < 4 columns
    assert score_reoie2016(gold, path, matcher="tuple").details["skipped_lines"] == [3]  # TabReader: < 3
    (tmp_path / "bad.json").write_text('{"s .": [\n{"pred": "is",}]}', encoding="utf-8")
    with pytest.raises(EvalInputError, match=r"bad\.json:2: not valid JSON"):
        score_reoie2016(tmp_path / "bad.json", path)
    _write_gold(tmp_path / "nokey.json", {"s .": [{"pred": "is", "arg0": "a"}]})
    with pytest.raises(EvalInputError, match=r"tuple 0: missing/non-string \['arg1'"):
        score_reoie2016(tmp_path / "nokey.json", path)
    with pytest.raises(ValueError, match="unknown matcher"):
        score_reoie2016(gold, path, matcher="exact")  # type: ignore[arg-type]
