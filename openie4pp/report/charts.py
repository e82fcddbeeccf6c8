"""The report's charts: matplotlib figures as inline SVG, so the page needs no script library and
no network (a report must open from a laptop's disk).

Text stays text (``svg.fonttype: none``: smaller files, the browser draws the labels with its own
fonts, CJK and Arabic language names included) and the SVG ids are salted with a fixed string, so
the same data gives the same bytes. Figures use matplotlib's object API on an Agg canvas (no
pyplot, no global backend switch), as :func:`openie4pp.eval.curve.plot_pr` does.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def plain(text: str) -> str:
    """``text`` shown as written: matplotlib reads ``$...$`` as math (a folder named ``cost_$5_$10``
    would not parse) and hides legend labels that start with ``_``."""
    text = text.replace("$", r"\$")
    return f" {text}" if text.startswith("_") else text


def _plain_all(items: Sequence[str]) -> list[str]:
    return [plain(item) for item in items]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=96, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def to_svg(figure: Any) -> str:
    """The figure as an ``<svg>`` element (no XML prolog, no doctype), deterministic. Its ids are
    prefixed with a hash of its content: matplotlib numbers every figure ``figure_1``, and several
    charts inline in one page must not share ids."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "openie4pp"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    prefix = "c" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8] + "-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    return re.sub(r'(url\(#|href="#)([^)"]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)


def acceptance_chart(languages: Sequence[str], accepted: Sequence[int],
                     rejected: Mapping[str, Sequence[int]]) -> str:
    """One horizontal bar per language: records accepted, then sentences rejected per reason."""
    figure = _figure(7.0, 0.45 * len(languages) + 1.4)
    ax = figure.add_subplot(1, 1, 1)
    positions = list(range(len(languages)))
    left = [float(a) for a in accepted]
    ax.barh(positions, left, color="#2ca02c", label="accepted")
    for colour, (reason, counts) in zip(PALETTE[1:] * 3, sorted(rejected.items()), strict=False):
        ax.barh(positions, counts, left=left, color=colour, label=plain(reason))
        left = [x + c for x, c in zip(left, counts, strict=True)]
    return _finish_bars(figure, ax, languages, "sentences")


def reasons_chart(labels: Sequence[str], sentences: Sequence[int], candidates: Sequence[int]) -> str:
    """Rejection lines per (stage, reason): sentence-level and single-candidate lines side by side."""
    figure = _figure(7.0, 0.4 * len(labels) + 1.4)
    ax = figure.add_subplot(1, 1, 1)
    positions = list(range(len(labels)))
    ax.barh([p - 0.2 for p in positions], sentences, height=0.4, color=PALETTE[1], label="sentences")
    ax.barh([p + 0.2 for p in positions], candidates, height=0.4, color=PALETTE[4], label="candidate triples")
    return _finish_bars(figure, ax, labels, "rejection lines")


def _finish_bars(figure: Any, ax: Any, labels: Sequence[str], xlabel: str) -> str:
    """A horizontal bar chart's labels (first bar on top), legend and grid, as SVG."""
    ax.set_yticks(range(len(labels)), _plain_all(labels))
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, axis="x", alpha=0.3)
    return to_svg(figure)


def scores_chart(languages: Sequence[str], scores: Mapping[str, Sequence[float | None]]) -> str:
    """Grouped bars of scores in [0, 1] per language (canary precision, recall, F1)."""
    figure = _figure(7.0, 3.2)
    ax = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(scores))
    for i, (colour, (name, values)) in enumerate(zip(PALETTE, scores.items(), strict=False)):
        xs = [p + (i - (len(scores) - 1) / 2) * width for p in range(len(languages))]
        ax.bar(xs, [v or 0.0 for v in values], width=width, color=colour, label=name)
    ax.set_xticks(range(len(languages)), _plain_all(languages))
    ax.set_ylim(0.0, 1.05)
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return to_svg(figure)


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
               title: str = "", *, unit_square: bool = False, log_y: bool = False) -> str:
    """Lines (training losses, learning rate, PR curves: ``unit_square`` fixes both axes to [0, 1])."""
    figure = _figure(6.0, 3.6)
    ax = figure.add_subplot(1, 1, 1)
    for colour, (name, (xs, ys)) in zip(PALETTE * 4, series.items(), strict=False):
        ax.plot(list(xs), list(ys), color=colour, linewidth=1.4, label=plain(name),
                marker="o" if len(xs) == 1 else None)
    if unit_square:
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.05)
    if log_y and all(y > 0 for _, ys in series.values() for y in ys):
        ax.set_yscale("log")
    ax.set_xlabel(plain(xlabel))
    ax.set_ylabel(plain(ylabel))
    if title:
        ax.set_title(plain(title))
    if series:
        ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)
    return to_svg(figure)
