"""Run a script as if Ray, DeepSpeed, vLLM, decord, openai, soundfile and PyAV were not installed (the
bare CUDA image ``benchmarks/gpu_train.py`` is meant for):

    python tests/benchmarks/without_heavy_libs.py SCRIPT [ARGS...]
    python tests/benchmarks/without_heavy_libs.py -m MODULE [MODULE...]   # import them (benchmarks/ too)

Each blocked name is ``None`` in ``sys.modules``, so ``import ray`` raises ``ModuleNotFoundError`` and
``importlib.util.find_spec("deepspeed")`` answers None, as where it is absent (transformers and
accelerate probe for DeepSpeed that way); a ``sys.meta_path`` finder also refuses the names and their
submodules, whatever else removes the ``None``. At exit it fails if a blocked module got loaded anyway.
"""

from __future__ import annotations

import atexit
import importlib
import os
import runpy
import sys
from pathlib import Path

BLOCKED = ("ray", "deepspeed", "vllm", "decord", "openai", "soundfile", "av")


def blocked(name: str) -> bool:
    return name.split(".")[0] in BLOCKED


class Refuse:
    """A meta-path finder that refuses the blocked packages and everything under them."""

    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"{name} is blocked (not on the bare image)", name=name)
        return None


def install() -> None:
    sys.meta_path.insert(0, Refuse())
    for name in BLOCKED:
        sys.modules[name] = None  # absent for importlib.util.find_spec probes too


def check_clean() -> None:
    loaded = sorted(n for n, m in sys.modules.items() if blocked(n) and m is not None)
    if loaded:
        print(f"blocked modules were loaded: {loaded}", file=sys.stderr, flush=True)
        os._exit(3)


def main(argv: list[str]) -> None:
    install()
    atexit.register(check_clean)
    if argv[0] == "-m":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
        for name in argv[1:]:
            importlib.import_module(name)
        print("imported", len(argv) - 1)
        return
    sys.argv = argv
    sys.path.insert(0, str(Path(argv[0]).resolve().parent))
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
