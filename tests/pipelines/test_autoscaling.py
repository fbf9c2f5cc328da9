"""Autoscaling actor pools: the bounds each stage gets from its config (``actors`` fixed, else
``min_actors`` to ``max_actors``, unbounded when 0 for a stage asking GPUs or custom resources), the
cluster preset's maxima against ``ray_cluster.yaml``, and a real autoscaling run: a head without the
``llm`` resource, a (v1) autoscaler over fake ``llm`` worker nodes, none at the start; the audio stage
(``{llm: 1}``, no max configured) is slow per row, so its pool grows, the autoscaler adds nodes, and
the idle nodes go after the run, with every input exactly once in the output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from annotate_helpers import check_every_name_once
from clip_copies import copies, original
from cluster_runs import run_scenario

from core import placement
from core.config import ConfigError
from pipelines import pools
from pipelines.config import AnnotateConfig, StageConfig

ROOT = Path(__file__).resolve().parents[2]


def _problems(**stage) -> list[str]:
    with pytest.raises(ConfigError) as info:
        StageConfig(**stage)
    return info.value.problems


def test_stage_config_checks_the_pool_bounds():
    assert StageConfig(min_actors=2, max_actors=8).problems() == []
    problems = _problems(actors=2, min_actors=1, max_actors=4, batch_size=0)
    assert len(problems) == 2 and "actors = 2 fixes the pool size" in problems[0]
    assert problems[1].startswith("batch_size = 0")  # every problem is collected
    assert _problems(min_actors=5, max_actors=4) == ["min_actors = 5: must be <= max_actors (4)"]
    assert _problems(min_actors=-1) == ["min_actors = -1: must be between 0 and 4096"]
    with pytest.raises(ConfigError) as info:
        AnnotateConfig.from_dict({"stages": {"audio": {"min_actors": 3, "max_actors": 2}}})
    assert "min_actors = 3: must be <= max_actors (2)" in str(info.value)


def test_pool_bounds_autoscale_beyond_the_clusters_current_size():
    assert StageConfig(actors=3).bounds() == (3, 3)
    assert StageConfig().bounds() == (1, None)  # unbounded: Ray Data and the autoscaler decide
    assert StageConfig(min_actors=2, max_actors=4).bounds() == (2, 4)
    assert StageConfig(min_actors=2).bounds() == (2, None)
    cold = {"CPU": 2.0}  # an autoscaling cluster with no worker node yet
    assert placement.spread((1, None), {"CPU": 1, "llm": 1}, cold) == 1
    assert placement.spread((1, None), {"CPU": 1, "llm": 1}, {"CPU": 8.0, "llm": 3.0}) == 3
    assert placement.spread((2, 64), {"llm": 1}, cold) == 64


def _bounds(cfg: AnnotateConfig, totals: dict, monkeypatch) -> dict[str, tuple]:
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: totals)
    groups = pools.stage_groups(cfg)
    return {g[0][0].name: b for g, b in zip(groups, pools.pool_sizes(groups))}


def test_the_cluster_preset_grows_on_a_cold_cluster(monkeypatch):
    from emer.runconfig import load_run_config

    cfg = load_run_config("cluster").annotate
    bounds = _bounds(cfg, {"CPU": 0.0}, monkeypatch)  # the head only (CPU: 0), no worker yet
    assert set(bounds.values()) >= {(1, 128), (1, 4)} and all(
        lo == 1 and hi > 1 for lo, hi in bounds.values()
    )
    unbounded = cfg.replace(stages=cfg.stages.replace(audio=cfg.stages.audio.replace(max_actors=0)))
    assert _bounds(unbounded, {"CPU": 0.0}, monkeypatch)["audio_clue"] == (1, None)
    plain = AnnotateConfig()  # no resources asked: decode gets the free CPUs, an LLM stage 1 actor
    local = _bounds(plain, {"CPU": 8.0}, monkeypatch)
    assert local["decode"] == (5, 5) and local["audio_clue"] == (1, 1)
    ranged = plain.replace(stages=plain.stages.replace(audio=StageConfig(min_actors=2, max_actors=3)))
    assert _bounds(ranged, {"CPU": 8.0}, monkeypatch)["audio_clue"] == (2, 3)


def test_batches_stay_whole_when_the_pool_is_unbounded():
    assert pools.batch_size_for(16, 1000, placement.spread((1, None), {"llm": 1}, {"CPU": 2.0})) == 16
    assert pools.batch_size_for(16, 20, placement.spread((1, 4), {"llm": 1}, {"CPU": 2.0})) == 5


def test_cluster_preset_max_actors_match_what_ray_cluster_yaml_provides():
    launcher = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())["available_node_types"]
    preset = yaml.safe_load((ROOT / "configs" / "cluster.yaml").read_text())["annotate"]["stages"]
    provides = {
        resource: sum(
            t.get("max_workers", 0) * t.get("resources", {}).get(resource, 0) for t in launcher.values()
        )
        for resource in ("decode", "llm")
    }
    assert provides == {"decode": 128, "llm": 4}
    for name, stage in preset.items():
        (resource, per_actor), *_ = stage["resources"].items()
        assert stage["max_actors"] == provides[resource] // per_actor, name


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_the_model_pool_and_the_cluster_scale_up_then_down(sample_clips, tmp_path):
    clips, subtitles, names = copies(sample_clips, tmp_path / "input", n=4)
    output = str(tmp_path / "out")
    report = run_scenario(
        "autoscale",
        tmp_path,
        [
            "--input",
            clips,
            "--subtitles",
            subtitles,
            "--output",
            output,
            "--max-workers",
            "3",
            "--delay",
            "0.5",
        ],
    )
    assert report["workers_at_start"] == 0
    assert report["max_audio_actors_alive"] >= 2, report  # the pool grew beyond one actor ...
    assert report["workers_seen"] >= 2, report  # ... on nodes the autoscaler added
    assert report["workers_left"] == 0, report  # and the idle nodes went after the run
    samples, failures = check_every_name_once(output, names)
    good = {n for n in names if original(n) in sample_clips.clips}
    assert set(samples) == good and report["counts"]["pending"] == 0  # the broken inputs failed
    assert {r["stage"] for r in failures.values()} <= {"decode", "check"}, failures
    assert report["audio_requests"] == len(good)  # the audio stage ran once for every sample
