"""Progress metrics shared by the pipeline stages and the trainer, plus a local progress line.

``metrics.counter("emer_clips_decoded").inc(n, {"stage": "decode"})`` records through
``ray.util.metrics`` when this process is part of a Ray job (driver, task or actor): the Ray
dashboard's metrics view and Prometheus read it from each node's metrics agent, where counters
appear as ``ray_<name>_total`` and gauges as ``ray_<name>``. Outside Ray every call is a cheap
no-op (Ray is not even imported), and a metric can never crash the caller: a bad value or tag is
logged once and dropped.

Every name is declared once in ``METRICS`` (kind, help text, tag keys) so that the stages, the
trainer and ``cluster/grafana_dashboard.json`` agree; missing tags are filled with ``"none"``.
``ProgressLine`` prints one dense, throttled line per step for long commands run locally.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    kind: str  # "counter" | "gauge" | "histogram"
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()  # histogram buckets


_LAT = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

METRICS: dict[str, MetricSpec] = {
    "emer_clips_decoded": MetricSpec("counter", "Clips decoded into frames and audio", ("stage",)),
    "emer_clips_rejected": MetricSpec(
        "counter",
        "Clips that left the pipeline as rejected (a check) or failed (an error), by reason code",
        ("stage", "reason"),
    ),
    "emer_rows_processed": MetricSpec("counter", "Rows (clips) that left a pipeline stage", ("stage",)),
    "emer_samples_written": MetricSpec("counter", "Samples written to the output dataset", ("stage",)),
    "emer_rows_failed": MetricSpec(
        "counter",
        "Rows failed by an error in a stage (not a check's rejection), by short reason code; "
        "a subset of emer_clips_rejected",
        ("stage", "reason"),
    ),
    "emer_llm_requests": MetricSpec(
        "counter", "LLM / MLLM requests answered (ok or failed)", ("role", "model")
    ),
    "emer_llm_tokens": MetricSpec("counter", "LLM tokens, kind=prompt|completion", ("role", "model", "kind")),
    "emer_llm_errors": MetricSpec(
        "counter",
        "LLM requests that failed, by kind (http_429, timeout, bad_input, ...)",
        ("role", "model", "kind"),
    ),
    "emer_llm_retries": MetricSpec("counter", "LLM request attempts that were retried", ("role", "model")),
    "emer_llm_latency_seconds": MetricSpec(
        "histogram",
        "Seconds of one LLM call: one HTTP request (openai) or one generate batch (transformers, vllm)",
        ("role", "model"),
        _LAT,
    ),
    "emer_s3_retries": MetricSpec("counter", "S3 requests retried (throttling such as SlowDown)", ("op",)),
    "emer_stage_seconds": MetricSpec("histogram", "Seconds a stage spent on one batch", ("stage",), _LAT),
    "emer_train_samples_per_second": MetricSpec("gauge", "Training throughput (samples/s)", ("run",)),
    "emer_train_loss": MetricSpec("gauge", "Training / validation loss", ("run", "split")),
    "emer_train_step": MetricSpec("gauge", "Optimizer steps done", ("run",)),
    "emer_train_learning_rate": MetricSpec("gauge", "Current learning rate", ("run",)),
    "emer_eval_samples": MetricSpec("counter", "Samples scored by the evaluation", ("task",)),
}

_lock = threading.Lock()
_ray_metrics: dict[str, Any] = {}
_warned: set[str] = set()


def ray_active() -> bool:
    """True when this process is connected to Ray (never imports Ray itself)."""
    ray = sys.modules.get("ray")
    try:
        return bool(ray is not None and ray.is_initialized())
    except Exception:  # a half-imported Ray
        return False


def _warn_once(key: str, msg: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def _ray_metric(name: str, spec: MetricSpec) -> Any:
    metric = _ray_metrics.get(name)
    if metric is None:
        with _lock:
            metric = _ray_metrics.get(name)
            if metric is None:
                from ray.util import metrics as rm

                if spec.kind == "counter":
                    metric = rm.Counter(name, description=spec.description, tag_keys=spec.tag_keys)
                elif spec.kind == "gauge":
                    metric = rm.Gauge(name, description=spec.description, tag_keys=spec.tag_keys)
                else:
                    metric = rm.Histogram(
                        name,
                        description=spec.description,
                        boundaries=list(spec.boundaries or _LAT),
                        tag_keys=spec.tag_keys,
                    )
                _ray_metrics[name] = metric
    return metric


class Metric:
    """One declared metric; record with ``inc`` (counter), ``set`` (gauge) or ``observe`` (histogram)."""

    def __init__(self, name: str, spec: MetricSpec) -> None:
        self.name = name
        self.spec = spec

    def _tags(self, tags: dict[str, Any] | None) -> dict[str, str]:
        tags = tags or {}
        unknown = set(tags) - set(self.spec.tag_keys)
        if unknown:
            _warn_once(
                f"{self.name}:{sorted(unknown)}",
                "metric %s: tag(s) %s not declared in METRICS; dropped",
                self.name,
                ", ".join(sorted(unknown)),
            )
        return {k: str(tags[k]) if tags.get(k) not in (None, "") else "none" for k in self.spec.tag_keys}

    def _record(self, method: str, value: float, tags: dict[str, Any] | None) -> None:
        if not ray_active():
            return
        try:
            getattr(_ray_metric(self.name, self.spec), method)(float(value), tags=self._tags(tags))
        except Exception as err:  # metrics must never break a stage
            _warn_once(f"{self.name}:{type(err).__name__}", "metric %s not recorded: %s", self.name, err)

    def inc(self, value: float = 1, tags: dict[str, Any] | None = None) -> None:
        if value and value > 0:
            self._record("inc", value, tags)

    def set(self, value: float | None, tags: dict[str, Any] | None = None) -> None:
        if value is not None:
            self._record("set", value, tags)

    def observe(self, value: float, tags: dict[str, Any] | None = None) -> None:
        self._record("observe", value, tags)


def _get(name: str, kind: str) -> Metric:
    spec = METRICS.get(name)
    if spec is None:
        raise KeyError(
            f"metric {name!r} is not declared; add it to core.metrics.METRICS "
            f"(known: {', '.join(sorted(METRICS))})"
        )
    if spec.kind != kind:
        raise TypeError(f"metric {name!r} is a {spec.kind}, not a {kind}")
    return Metric(name, spec)


def counter(name: str) -> Metric:
    return _get(name, "counter")


def gauge(name: str) -> Metric:
    return _get(name, "gauge")


def histogram(name: str) -> Metric:
    return _get(name, "histogram")


def prometheus_name(name: str) -> str:
    """The series Prometheus scrapes for a declared metric: Ray prefixes ``ray_``; counters end in
    ``_total``, histograms are read through their ``_bucket`` series."""
    suffix = {"counter": "_total", "histogram": "_bucket"}.get(METRICS[name].kind, "")
    return f"ray_{name}{suffix}"


class ProgressLine:
    """One dense progress line, printed at most every ``every`` seconds (and once at ``close``).

    ``p = ProgressLine("annotate", total=210, unit="clips"); p.update(8, rejected=1); p.close()``
    prints e.g. ``annotate: 120/210 clips (57%) 12.3 clips/s ETA 7s | rejected=3``.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "items",
        every: float = 5.0,
        stream: TextIO | None = None,
    ) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.extra: dict[str, float] = {}
        self.start = self._last = time.monotonic()
        self._printed = -1  # ``done`` when the last line was printed

    def update(self, n: int = 1, **counts: float) -> None:
        self.done += n
        for key, value in counts.items():
            self.extra[key] = self.extra.get(key, 0) + value
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.print()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        head = f"{self.label}: {self.done}"
        if self.total:
            head += f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            tail = f" ETA {eta:.0f}s" if eta != float("inf") else ""
        else:
            head += f" {self.unit}"
            tail = ""
        extra = " ".join(f"{k}={v:g}" for k, v in self.extra.items())
        return f"{head} {rate:.1f} {self.unit}/s{tail} {elapsed:.0f}s" + (f" | {extra}" if extra else "")

    def print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._printed = self.done

    def close(self) -> None:
        """The final line, unless the last printed line already showed the final count."""
        if self._printed != self.done:
            self.print()
