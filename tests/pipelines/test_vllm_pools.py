"""What a ``backend: vllm`` group asks of Ray, checked before anything starts (finding 5: a three-step
group once needed 12 actors and deadlocked on 4 CPUs), on a local Ray and by ``emer submit``'s fit
check; and the ``chat_utils`` hook against vLLM 0.33's module layout (finding 1). No vLLM needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cluster import fit
from emer.runconfig import load_run_config
from pipelines import pools
from pipelines.config import AnnotateConfig

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def vllm_cfg(**extra) -> AnnotateConfig:
    llm = {"backend": "vllm", "model": "Qwen/Qwen2-7B-Instruct", "num_gpus": 0, "concurrency": 1}
    return AnnotateConfig.from_dict({"clues": "omni", "omni": llm, "text": llm, **extra})


def test_a_vllm_group_asks_one_engine_and_a_media_step_rays_cpu_actors():
    groups = pools.stage_groups(vllm_cfg())
    asks = {what: (per, n) for what, per, n in pools.min_asks(groups, [(1, 1)] * len(groups))}
    assert asks["disambiguate+translate+ov_labels vLLM engine replica"] == ({"CPU": 1.0}, 1)  # ONE engine
    assert asks["av_clue vLLM engine replica"] == ({"CPU": 1.0}, 1)
    media = [w for w in asks if w.startswith("av_clue ") and w.endswith("(ray.data.llm)")]
    assert len(media) == 4  # PrepareMultimodal, ChatTemplate, Tokenize, Detokenize
    assert not [w for w in asks if w.startswith("disambiguate") and w.endswith("(ray.data.llm)")]
    assert asks["sink"] == ({"CPU": 1.0}, 1)


def test_pools_that_cannot_start_on_the_local_ray_fail_with_a_clear_error():
    groups = pools.stage_groups(vllm_cfg())
    bounds = [(1, 1)] * len(groups)
    with pytest.raises(pools.PoolsDontFit) as err:
        pools.check_room(groups, bounds, {"CPU": 4.0})
    msg = str(err.value)
    assert "CPU: 10 (it has 4)" in msg and "wait forever" in msg and "ray.num_cpus" in msg
    assert "av_clue PrepareMultimodal (ray.data.llm) 1 x {CPU: 1}" in msg
    pools.check_room(groups, bounds, {"CPU": 10.0})  # enough: no error


def test_a_local_run_whose_pools_do_not_fit_stops_before_starting(ray_local, tmp_path):
    from pipelines.annotate import build_pipeline

    rows = [{"name": "a", "clip": str(tmp_path / "a.mp4")}]
    with pytest.raises(pools.PoolsDontFit, match="it has 4"):
        build_pipeline(vllm_cfg(), rows, str(tmp_path / "out"))


def test_plain_pools_that_do_not_fit_at_once_still_build_on_the_local_ray(ray_local, tmp_path, monkeypatch):
    """The demo preset's four 1-CPU pools on 2 CPUs: Ray Data runs them one after another (the demo
    did, on this 2-core machine); the check is for vLLM groups alone."""
    from pipelines.annotate import build_pipeline

    cfg = load_run_config("demo").annotate
    groups = pools.stage_groups(cfg)
    assert not pools.has_vllm(groups) and pools.has_vllm(pools.stage_groups(vllm_cfg()))
    with pytest.raises(pools.PoolsDontFit):  # they do not fit at once on 2 CPUs...
        pools.check_room(groups, [(1, 1)] * len(groups), {"CPU": 2.0})
    monkeypatch.setattr(ray_local, "cluster_resources", lambda: {"CPU": 2.0, "memory": 8e9})  # 2 cores
    rows = [{"name": "a", "clip": str(tmp_path / "a.mp4")}]
    assert build_pipeline(cfg, rows, str(tmp_path / "out")) is not None  # ...and are not refused
    with pytest.raises(pools.PoolsDontFit, match="it has 2"):  # a vLLM group is
        build_pipeline(vllm_cfg(), rows, str(tmp_path / "out2"))


def test_the_fit_check_counts_engine_bundles_and_cpu_actors():
    run = load_run_config(["cluster"], ["annotate.clues=omni", "annotate.omni.backend=vllm"])
    asks = [a for a in fit.asks(run, ["annotate"])["annotate"] if a.key == "annotate.stages.omni"]
    engine = [a for a in asks if "engine replica" in a.note]
    assert len(engine) == 1 and engine[0].per_unit == {"CPU": 1.0, "GPU": 1.0, "llm": 1.0}
    assert len(asks) == 6  # the engine, 4 CPU stages, the tasks
    assert fit.fit_problems(run, fit.node_types(), ["annotate"]) == []
    wide = load_run_config(
        ["cluster"],
        ["annotate.clues=omni", "annotate.omni.backend=vllm", "annotate.omni.tensor_parallel_size=4"],
    )
    problems = fit.fit_problems(wide, fit.node_types(), ["annotate"])
    assert any("GPU: 4" in p and "no node type has room" in p for p in problems), problems


def test_the_hook_aliases_chat_utils_in_vllm_033s_layout(tmp_path):
    """A stand-in package laid out as the vllm 0.33.0 wheel is (checked: ``vllm/renderers/chat_utils/``
    is a package exporting ``parse_chat_messages_async``; no ``vllm/entrypoints/chat_utils``)."""
    pkg = tmp_path / "vllm"
    for sub in ("", "entrypoints", "renderers", "renderers/chat_utils"):
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    init = "async def parse_chat_messages_async(messages, model_config, content_format):\n    return 1\n"
    (pkg / "renderers" / "chat_utils" / "__init__.py").write_text(init)
    code = textwrap.dedent(
        """
        from pipelines import vllm_compat
        assert vllm_compat.install() == "aliased"
        from vllm.entrypoints.chat_utils import parse_chat_messages_async
        import vllm.renderers.chat_utils as new
        assert parse_chat_messages_async is new.parse_chat_messages_async
        assert vllm_compat.install() == "native"  # idempotent
        print("ok")
        """
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_decode_gets_only_what_the_vllm_pools_and_the_sink_leave(ray_local):
    """pool_sizes gives decode the CPUs left after a vLLM group's engine, its tasks and the sink's
    own pool (after a vLLM group the sink runs alone), so a run that fits passes its own check."""
    llm = {"backend": "vllm", "model": "Qwen/Qwen2-7B-Instruct", "concurrency": 1}
    clue = {"backend": "openai"}
    small = {"audio": {"num_cpus": 0.25}, "video": {"num_cpus": 0.25}, "text": {"num_cpus": 0.5}}
    cfg = AnnotateConfig.from_dict({"audio": clue, "video": clue, "text": llm, "stages": small})
    groups = pools.stage_groups(cfg)
    bounds = pools.pool_sizes(groups)  # 4 CPUs: clues 0.5, engine 0.5, tasks 1, sink 0.5 -> decode 1
    assert bounds[0][0] == 1
    pools.check_room(groups, bounds, ray_local.cluster_resources())
