"""Data files that wheels ship, located without importing the wheel's code.

``resemblyzer`` (its ``__init__`` imports librosa and webrtcvad) and ``scikit-image`` (scipy and more)
are installed with ``--no-deps`` for their data files only: ``resemblyzer/pretrained.pt`` (the GE2E
speaker encoder) and ``skimage/data/*.png`` (real photos with faces). ``importlib.util.find_spec``
finds a top-level package's folder without running its ``__init__``. A leaf module.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

INSTALL = {
    "resemblyzer": "pip install --no-deps resemblyzer==0.1.4",
    "skimage": "pip install --no-deps scikit-image==0.26.0",
}


def package_file(package: str, *parts: str) -> Path:
    """``<package folder>/<parts...>``; a clear error naming the install command when missing."""
    hint = INSTALL.get(package, f"pip install {package}")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed; its data files are needed: {hint} (make setup)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the installed {package}; reinstall it: {hint}")
    return path
