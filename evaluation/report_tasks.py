"""Report sections and plots of the discrete (``hit``) and sentiment (``sentiment``) tasks.

``report.render_markdown`` calls ``md_hit`` / ``md_sentiment`` for those sections; the commands
pass ``plot_hit`` / ``plot_sentiment`` to ``report.write_report``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

POLARITIES = ("positive", "negative", "neutral")


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def md_hit(s: dict) -> list[str]:
    out = [
        f"Predictions `{s.get('predictions', '')}` against `{s.get('gt', '')}`; {s.get('samples')} "
        f"samples. A hit: the label's {s.get('level', 'level1')} wheel cluster is among the "
        "prediction's clusters; hit rate = mean over the wheels.",
        "",
        f"**Hit rate: {_pct(s.get('hit_rate'))}**",
        "",
        "| wheel | hit rate | samples | excluded (label outside the wheel) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for w, v in s.get("wheels", {}).items():
        out.append(f"| {w} | {_pct(v['hit_rate'])} | {v['samples']} | {v['excluded']} |")
    out += ["", "| class | hit rate | samples | wheels scoring it |", "| --- | ---: | ---: | ---: |"]
    for c, v in s.get("classes", {}).items():
        out.append(f"| {c} | {_pct(v['hit_rate'])} | {v['samples']} | {v['wheels_scored']} |")
    notes = [
        f"{k.replace('_', ' ')}: {s[k]}"
        for k in ("missing_predictions", "empty_predictions", "unscored_samples", "extraction_failures")
        if s.get(k)
    ]
    return out + [""] + [f"- {n}" for n in notes]


def md_sentiment(s: dict) -> list[str]:
    out = [
        f"Predictions `{s.get('predictions', '')}` against `{s.get('gt', '')}`. Polarity mapping: "
        f"**{s.get('mapping')}** ({s.get('mapping_note', '')}). Scored: the {s.get('samples')} samples "
        f"whose ground truth is not neutral ({s.get('neutral_gt_excluded')} neutral left out), "
        "positive vs not positive; valence threshold "
        f"{s.get('valence_threshold')}.",
        "",
        "| WAF | Accuracy |",
        "| ---: | ---: |",
        f"| {_pct(s.get('weighted_f1'))} | {_pct(s.get('accuracy'))} |",
        "",
        "Confusion counts of all samples (rows: ground truth, columns: prediction):",
        "",
        "| | " + " | ".join(POLARITIES) + " |",
        "| --- |" + " ---: |" * len(POLARITIES),
    ]
    for g in POLARITIES:
        row = s.get("confusion", {}).get(g, {})
        out.append(f"| {g} | " + " | ".join(str(row.get(p, 0)) for p in POLARITIES) + " |")
    notes = [
        f"{k.replace('_', ' ')}: {s[k]}"
        for k in ("missing_predictions", "llm_failures", "extraction_failures")
        if s.get(k)
    ]
    return out + [""] + [f"- {n}" for n in notes]


def plot_hit(summary: dict) -> Callable:
    def draw(fig):
        wheels, classes = summary["wheels"], summary["classes"]
        ax = fig.add_subplot(1, 2, 1)
        ax.bar(range(len(wheels)), [100 * v["hit_rate"] for v in wheels.values()])
        ax.set_xticks(range(len(wheels)), list(wheels), fontsize=7)
        ax.set_ylabel("hit rate (%)")
        ax.set_title("per wheel")
        ax = fig.add_subplot(1, 2, 2)
        ax.bar(range(len(classes)), [100 * v["hit_rate"] for v in classes.values()], color="tab:orange")
        ax.set_xticks(range(len(classes)), list(classes), rotation=30, ha="right", fontsize=7)
        ax.set_title("per class")

    return draw


def plot_sentiment(summary: dict) -> Callable:
    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        data = [[summary["confusion"][g][p] for p in POLARITIES] for g in POLARITIES]
        ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(3), POLARITIES)
        ax.set_yticks(range(3), POLARITIES)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, str(data[i][j]), ha="center", va="center")
        ax.set_xlabel(f"prediction ({summary.get('mapping')})")
        ax.set_ylabel("ground truth")
        ax.set_title("Sentiment confusion counts")

    return draw
