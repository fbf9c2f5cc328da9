"""A node lost mid-run: a head and two ``llm`` worker nodes (``ray.cluster_utils.Cluster``, fast health
checks); the audio stage's one actor (``{llm: 1}``) runs on a worker that is removed while it
works (``remove_node``). The run finishes, the actor comes back on the other worker, every input
lands exactly once (samples + failures) and, with ``isolate_crashes`` off, the rows lost with the node
are failures whose reason quotes Ray's errors and names the lost node (Ray's errors do not:
``ActorUnavailableError ... Socket closed``, ``ObjectReconstructionFailedError`` for the blocks its
object store held).
"""

from __future__ import annotations

import pytest
from annotate_helpers import check_every_name_once
from clip_copies import copies, original
from cluster_runs import run_scenario

from core.failures import BlockErrors
from pipelines.annotate import CRASH_REASON, MAX_RAY_ERRORS, crash_reason


def test_crash_reason_quotes_rays_errors():
    assert crash_reason([]) == CRASH_REASON
    errors = [f"ActorDiedError: node {i} died" for i in range(MAX_RAY_ERRORS + 2)]
    reason = crash_reason(errors)
    assert reason.startswith(CRASH_REASON + ". Ray reported: ActorDiedError: node 0 died | ")
    assert f"node {MAX_RAY_ERRORS - 1} died" in reason and f"node {MAX_RAY_ERRORS} died" not in reason
    assert reason.endswith("(and 2 more)")
    lost = crash_reason(errors[:1], ["abc (10.0.0.2): health check failed"])
    assert lost.endswith(" died. Nodes lost during the run: abc (10.0.0.2): health check failed")


def test_block_errors_collects_what_ray_data_logs_for_a_lost_block(monkeypatch):
    import logging

    from core import failures

    nodes = [{"NodeID": "old", "Alive": False}, {"NodeID": "n1", "Alive": True}]
    monkeypatch.setattr(failures, "_nodes", lambda: nodes)

    log = logging.getLogger(BlockErrors.LOGGER)
    err = RuntimeError("The actor died because its node has died. Node Id: abc123\n\tmore")
    with BlockErrors() as errors:
        for _ in range(2):  # the same error twice is quoted once
            log.error('An exception was raised from a task of operator "Map". Ignoring', exc_info=err)
        log.error("something else", exc_info=ValueError("not a block"))
        nodes[1] = {
            "NodeID": "n1",
            "Alive": False,
            "NodeManagerAddress": "10.0.0.2",
            "DeathReasonMessage": "gone",
        }
    log.error('An exception was raised from a task of operator "Map".', exc_info=err)  # after: not seen
    assert errors.messages == ["RuntimeError: The actor died because its node has died. Node Id: abc123 more"]
    assert errors.lost_nodes() == ["n1 (10.0.0.2): gone"]  # "old" was dead before


def _run(tmp_path, clips: str, subtitles: str, output: str, *extra: str) -> dict:
    args = ["--input", clips, "--subtitles", subtitles, "--output", output, "--remove-after", "6"]
    return run_scenario("node_loss", tmp_path, [*args, "--delay", "0.4", *extra])


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_node_lost_during_the_model_stage(sample_clips, tmp_path):
    clips, subtitles, names = copies(sample_clips, tmp_path / "input", n=3)
    output = str(tmp_path / "out")
    report = _run(tmp_path, clips, subtitles, output)
    removed = report["removed"]
    assert removed and removed["node"] in report["workers"], report
    samples, failures = check_every_name_once(output, names)  # the run finished, each input once
    assert report["counts"]["pending"] == 0
    crashed = [r for r in failures.values() if r["stage"] == "crash"]
    assert crashed and report["this_run"]["lost_to_crashes"] == len(crashed), report
    for row in crashed:  # the rows lost with the node say so, in Ray's words
        assert row["reason"].startswith(CRASH_REASON + ". Ray reported: "), row
        assert f"Nodes lost during the run: {removed['node']} (" in row["reason"], row
    good = {n for n in names if original(n) in sample_clips.clips}
    # the good clips not lost got through; broken ones failed in decode/check unless lost too
    assert set(samples) <= good <= set(samples) | {r["name"] for r in crashed}
    assert {r["stage"] for r in failures.values()} <= {"decode", "check", "crash"}
    # the audio actor came back on the other worker and went on (requests after the removal)
    assert samples and report["audio_requests"] > removed["audio_requests_before"] + 2, report


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_rows_lost_with_a_node_are_rerun_and_get_through(sample_clips, tmp_path):
    """The default (``isolate_crashes``): the lost rows are re-run one by one and all succeed."""
    clips, subtitles, names = copies(sample_clips, tmp_path / "input", n=3)
    output = str(tmp_path / "out")
    report = _run(tmp_path, clips, subtitles, output, "--isolate")
    assert report["removed"], report
    samples, failures = check_every_name_once(output, names)
    assert set(samples) == {n for n in names if original(n) in sample_clips.clips}
    assert {r["stage"] for r in failures.values()} == {"decode", "check"}  # the broken inputs only
    assert report["this_run"]["lost_to_crashes"] == 0 and report["counts"]["pending"] == 0
