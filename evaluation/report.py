"""Reports: ``report.json`` (all numbers), ``report.md`` (tables) and PNG plots in one folder.

Each command writes its own section (``ov``, ``text``, ``runs``, ``hit``, ``sentiment``; the OV one
always through ``write_ov_report``); sections
already in the folder's ``report.json`` are kept, so ``emer evaluate ov`` then ``emer evaluate text``
give one report.
All files go through ``core.storage`` (local folder or s3:// prefix).
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable

import pyarrow as pa

from core import storage
from core.plots import pyplot
from evaluation.report_tasks import md_hit, md_sentiment

# Display order of metrics in tables; a metric shows up when at least one run has it.
METRICS = ("avg", "accuracy", "recall", "f", "f_level1", "f_level2", "bleu1", "bleu4", "meteor", "rouge_l")

log = logging.getLogger(__name__)

TITLES = {
    "ov": "Open-vocabulary emotion recognition (set-level)",
    "text": "Description matching metrics",
    "runs": "Runs and models",
    "hit": "Discrete emotions: hit rate on the emotion wheels (MER-UniBench)",
    "sentiment": "Sentiment: positive vs negative (MER-UniBench)",
}
NOTES = (
    "missing_predictions",
    "extra_predictions",
    "empty_predictions",
    "skipped_empty_gt",
    "missing_groups",
    "labels_not_in_groups",
    "llm_malformed_answers",
    "llm_failures",
    "extraction_failures",
)


def write_report(
    out_dir: str, section: str, payload: dict, plots: dict[str, Callable] | None = None
) -> dict[str, str]:
    """Merge ``payload`` into ``out_dir/report.json``, re-render ``report.md``, draw ``plots``
    (file name -> function(fig) drawing on a matplotlib figure). Returns written file URIs."""
    json_uri = storage.join(out_dir, "report.json")
    report: dict = {}
    if storage.exists(json_uri):
        try:
            report = json.loads(storage.read_text(json_uri))
        except ValueError:
            log.warning("%s: unreadable, replacing it", json_uri)
    report.setdefault("sections", {})[section] = payload
    report["plots"] = {k: v for k, v in report.get("plots", {}).items() if v != section}
    written = {"json": json_uri, "md": storage.join(out_dir, "report.md")}
    for name, draw in (plots or {}).items():
        written[name] = storage.join(out_dir, name)
        storage.write_bytes(written[name], _png(draw))
        report.setdefault("plots", {})[name] = section
    storage.write_text(json_uri, json.dumps(report, indent=1, default=_plain))
    storage.write_text(written["md"], render_markdown(report))
    log.info("report written: %s", written["md"])
    return written


def write_ov_report(out_dir: str, summary: dict, rows: list[dict]) -> str:
    """The one OV report (``emer evaluate ov``, ``report`` and a run's evaluation): the ``ov`` section,
    its plot (F per emotion wheel when the wheels scored it, else the per-sample score histogram) and
    ``ov-samples.csv`` (one row per sample). Returns the report.md URI."""
    if "wheels" in summary:
        plots = {"ov-wheels.png": plot_wheels(summary)}
    else:
        plots = {"ov-samples.png": plot_ov_samples(rows)} if rows else {}
    md = write_report(out_dir, "ov", summary, plots)["md"]
    if rows:
        table = [{**r, "gt": str(r["gt"]), "pred": str(r["pred"])} for r in rows]
        storage.write_table(pa.Table.from_pylist(table), storage.join(out_dir, "ov-samples.csv"))
    return md


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _png(draw: Callable) -> bytes:
    plt = pyplot()
    fig = plt.figure(figsize=(7, 4.5), dpi=110)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def render_markdown(report: dict) -> str:
    lines = ["# Evaluation report", "", "Scores are percentages (report.json holds the exact fractions).", ""]
    sections = report.get("sections", {})
    renderers = {"ov": _md_ov, "text": _md_text, "runs": _md_runs, "hit": md_hit, "sentiment": md_sentiment}
    for name, render in renderers.items():
        if name in sections:
            lines += [f"## {TITLES[name]}", ""] + render(sections[name]) + [""]
    for png, section in sorted(report.get("plots", {}).items()):
        lines.append(f"![{section}: {png}]({png})")
    return "\n".join(lines).rstrip() + "\n"


def _md_ov(s: dict) -> list[str]:
    out = [
        f"Predictions `{s.get('predictions', '')}` against `{s.get('gt', '')}`; grouping "
        f"**{s.get('grouping')}**, {s.get('samples')} scored samples.",
        "",
        "| Avg | Accuracy_s | Recall_s |",
        "| ---: | ---: | ---: |",
        f"| {_pct(s.get('avg'))} | {_pct(s.get('accuracy'))} | {_pct(s.get('recall'))} |",
        "",
    ]
    if "wheels" in s:
        out += [
            "Emotion-wheel scores (F = 2PR/(P+R) per wheel, then averaged):",
            "",
            "| wheel / level | F | precision | recall | samples |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for key, v in s["wheels"].items():
            out.append(
                f"| {key} | {_pct(v['f'])} | {_pct(v['precision'])} | {_pct(v['recall'])} | {v['samples']} |"
            )
        for lv in ("level1", "level2"):
            out.append(
                f"| **mean {lv}** | **{_pct(s[lv]['f'])}** | {_pct(s[lv]['precision'])} | "
                f"{_pct(s[lv]['recall'])} | |"
            )
        out.append("")
    notes = [f"{k.replace('_', ' ')}: {s[k]}" for k in NOTES if s.get(k)]
    if s.get("missing_names"):
        notes.append("first missing: " + ", ".join(s["missing_names"][:10]))
    return out + [f"- {n}" for n in notes]


def _md_text(s: dict) -> list[str]:
    return [
        f"{s.get('samples')} samples, language {s.get('language', 'en')}.",
        "",
        "| BLEU-1 | BLEU-4 | METEOR | ROUGE-L |",
        "| ---: | ---: | ---: | ---: |",
        f"| {_pct(s.get('bleu1'))} | {_pct(s.get('bleu4'))} | {_pct(s.get('meteor'))} | "
        f"{_pct(s.get('rouge_l'))} |",
    ]


def _md_runs(s: dict) -> list[str]:
    models = s.get("models", {})
    metrics = [m for m in METRICS if any(m in v["metrics"] for v in models.values())]
    out = [
        "Mean ± standard deviation over each model's runs.",
        "",
        "| model | runs | " + " | ".join(metrics) + " |",
        "| --- | ---: |" + " ---: |" * len(metrics),
    ]
    for name, v in models.items():
        cells = []
        for m in metrics:
            a = v["metrics"].get(m)
            cells.append("–" if a is None else f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f}")
        out.append(f"| {name} | {len(v.get('runs', []))} | " + " | ".join(cells) + " |")
    corr = s.get("correlation", {})
    if corr.get("metrics") and len(models) >= 3:
        out += [
            "",
            "Pearson correlation between metrics across models:",
            "",
            "| | " + " | ".join(corr["metrics"]) + " |",
            "| --- |" + " ---: |" * len(corr["metrics"]),
        ]
        for m, row in zip(corr["metrics"], corr["matrix"]):
            out.append(f"| {m} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in row) + " |")
    return out


# ---------------------------------------------------------------- plots


def plot_ov_samples(rows: list[dict]) -> Callable:
    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        bins = [i / 10 for i in range(11)]
        ax.hist(
            [[r["accuracy"] for r in rows], [r["recall"] for r in rows]],
            bins=bins,
            label=["accuracy", "recall"],
        )
        ax.set_xlabel("per-sample score")
        ax.set_ylabel("samples")
        ax.set_title("Set-level scores per sample")
        ax.legend()

    return draw


def plot_wheels(summary: dict) -> Callable:
    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        keys = list(summary["wheels"])
        ax.bar(
            range(len(keys)),
            [summary["wheels"][k]["f"] * 100 for k in keys],
            color=["tab:blue" if k.endswith("level1") else "tab:orange" for k in keys],
        )
        ax.set_xticks(range(len(keys)), [k.replace("/", "\n") for k in keys], fontsize=7)
        ax.set_ylabel("F (%)")
        ax.set_title("Emotion-wheel F per wheel (blue: level 1, orange: level 2)")

    return draw


def plot_models(result: dict, metric: str) -> Callable:
    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        names = [n for n, v in result["models"].items() if metric in v["metrics"]]
        means = [result["models"][n]["metrics"][metric]["mean"] * 100 for n in names]
        stds = [result["models"][n]["metrics"][metric]["std"] * 100 for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"{metric}: mean ± std over runs")

    return draw


def plot_correlation(metrics: list[str], matrix: list[list]) -> Callable:
    def draw(fig):
        import numpy as np

        ax = fig.add_subplot(1, 1, 1)
        data = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
        im = ax.imshow(data, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(metrics)), metrics, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(metrics)), metrics, fontsize=8)
        for i in range(len(metrics)):
            for j in range(len(metrics)):
                if not np.isnan(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6)
        fig.colorbar(im, ax=ax)
        ax.set_title("Metric correlation across models (Pearson)")

    return draw
