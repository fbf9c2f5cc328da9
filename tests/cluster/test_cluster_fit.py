"""Every preset in configs/ fits the node types of ray_cluster.yaml (alone, with the cluster preset, and
the training presets with the model presets); impossible asks fail with one error naming the key, the
ask and the node types; ``emer submit`` runs the check before it sends anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster import fit
from emer.runconfig import CONFIG_DIR, load_run_config

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
TASK_PRESETS = [p for p in PRESETS if p != "cluster"]
MODEL_PRESETS = [p for p in PRESETS if p.startswith("affectgpt-")]
COMBOS = (
    [[p] for p in PRESETS]
    + [[p, "cluster"] for p in TASK_PRESETS]
    + [[s, m] for s in ("stage1", "stage2") for m in MODEL_PRESETS]
)


def test_the_node_types_offer_cpus_and_gpus_of_their_instances():
    types = {t.name: t for t in fit.node_types()}
    assert types["head"].resources == {"CPU": 0} and types["head"].max_workers == 1  # explicit wins
    assert types["gpu_worker"].resources == {"CPU": 8, "GPU": 1, "llm": 1}
    train = types["gpu_train_worker"]
    assert train.resources == {"CPU": 96, "GPU": 8} and train.max_workers >= 1


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: ",".join(c))
def test_every_preset_fits_the_cluster(combo):
    run = load_run_config(combo)
    assert fit.fit_problems(run, fit.node_types()) == []
    fit.check_fit(run, label=",".join(combo))  # raises if not


def test_stage1_fills_one_training_node():
    run = load_run_config("stage1")
    [ask] = fit.asks(run, ["train"])["train"]
    node = {t.name: t for t in fit.node_types()}["gpu_train_worker"]
    assert ask.min_count == 8 and ask.per_unit["GPU"] == 1
    assert ask.min_count * ask.per_unit["CPU"] <= node.resources["CPU"]  # all 8 on one node


@pytest.fixture
def without_train_node(tmp_path) -> Path:
    """ray_cluster.yaml as it was before: no 8-GPU node type."""
    launcher = yaml.safe_load(fit.DEFAULT_YAML.read_text())
    del launcher["available_node_types"]["gpu_train_worker"]
    path = tmp_path / "small_cluster.yaml"
    path.write_text(yaml.safe_dump(launcher))
    return path


def test_too_many_workers_name_the_key_and_the_node_types(without_train_node):
    with pytest.raises(fit.FitError) as err:
        fit.check_fit(load_run_config("stage1"), without_train_node, label="stage1")
    msg = str(err.value)
    assert "run config stage1 does not fit" in msg and str(without_train_node) in msg
    assert "train.workers.actors: 8 x {CPU: 10, GPU: 1}" in msg
    assert "at most 0 fit" not in msg and "no node type has room" in msg  # 10 CPUs: no g5.2xlarge has them
    assert "gpu_worker {CPU: 8, GPU: 1, llm: 1} x4" in msg and "cpu_worker {CPU: 8, decode: 8} x16" in msg
    small = load_run_config("stage1", ["train.workers.num_cpus=4"])
    with pytest.raises(
        fit.FitError, match=r"at most 4 fit \(gpu_worker 1 per node x4\); lower train.workers.actors"
    ):
        fit.check_fit(small, without_train_node)


def test_an_impossible_stage_ask_and_pools_that_cannot_run_together():
    run = load_run_config(
        ["cluster"],
        ["annotate.audio.num_gpus=2", "annotate.stages.video.actors=9", "annotate.stages.video.max_actors=0"],
    )
    problems = fit.fit_problems(run, fit.node_types())
    audio = "annotate.stages.audio: 1-4 x {CPU: 1, GPU: 2, llm: 1} (GPU from annotate.audio.num_gpus)"
    video = (
        "annotate.stages.video: 9 x {CPU: 1, GPU: 1, llm: 1} (GPU from annotate.video.num_gpus): at most 4 "
        "fit (gpu_worker 1 per node x4); lower annotate.stages.video.actors (or .max_actors) to 4"
    )
    assert any(p.startswith(audio) for p in problems), problems
    assert any(p.startswith(video) for p in problems), problems
    together = [p for p in problems if p.startswith("annotate: its pools run at once")]
    assert together and "llm: 11 together" in together[0] and "offers 4" in together[0]
    # the annotation stage list is read from the config: stop_after=check leaves only decode
    run = load_run_config(["cluster"], ["annotate.audio.num_gpus=2", "annotate.stop_after=check"])
    assert [a.key for a in fit.asks(run, ["annotate"])["annotate"]] == ["annotate.stages.decode"]
    assert fit.fit_problems(run, fit.node_types()) == []


def test_emer_submit_checks_the_fit_before_sending(emer, without_train_node, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc, _, err = emer("submit", "--config", "stage1", "--cluster-yaml", without_train_node, "train")
    assert rc == 2 and "does not fit" in err and "train.workers.actors" in err
    rc, _, err = emer("submit", "--cluster-yaml", without_train_node, "train", "--config", "stage1")
    assert rc == 2 and "run config stage1 does not fit" in err  # --config after the subcommand counts too
    rc, _, err = emer(
        "submit", "--skip-fit-check", "--config", "stage1", "--cluster-yaml", without_train_node, "train"
    )
    assert rc == 2 and "no cluster address" in err  # checked nothing, went on to connect
    rc, _, err = emer("submit", "--config", "stage1", "train")  # the real ray_cluster.yaml: fits
    assert rc == 2 and "no cluster address" in err and "does not fit" not in err
    rc, _, err = emer("submit", "--cluster-yaml", "/nonexistent.yaml", "train")
    assert rc == 2 and "--cluster-yaml /nonexistent.yaml: no such file" in err
