"""``core.resources.Resources``: checks collected once, pool bounds, per-actor asks, remote args."""

import pytest

from core.config import ConfigError
from core.resources import Resources


def test_defaults_ask_one_cpu_and_scale_from_one_actor():
    res = Resources()
    assert res.per_actor() == {"CPU": 1.0}
    assert res.bounds() == (1, None)
    assert res.remote_args() == {"num_cpus": 1.0}


def test_fixed_pool_gpus_and_custom_resources():
    res = Resources.from_dict({"num_cpus": 2, "num_gpus": 1, "resources": {"llm": 1}, "actors": 4})
    assert res.bounds() == (4, 4)
    assert res.per_actor() == {"CPU": 2.0, "GPU": 1.0, "llm": 1.0}
    assert res.remote_args(max_restarts=3) == {
        "max_restarts": 3,
        "num_cpus": 2.0,
        "num_gpus": 1.0,
        "resources": {"llm": 1.0},
    }


def test_every_problem_is_reported_once_with_its_key():
    with pytest.raises(ConfigError) as err:
        Resources.from_dict({"num_gpus": -1, "actors": 2, "max_actors": 3, "resources": {"llm": -2}})
    text = str(err.value)
    assert "3 problem(s)" in text
    assert "num_gpus" in text and "actors = 2 fixes the pool size" in text and "resources.llm" in text


def test_min_above_max_is_refused():
    with pytest.raises(ConfigError, match="min_actors = 5: must be <= max_actors"):
        Resources(min_actors=5, max_actors=2)
