"""Emotion-wheel (EW) grouping of MER-UniBench / the MER2025 OV track, as evaluation loads it.

The wheel itself (``Wheel``, the mappings, building it from the spreadsheets) lives in
``core.wheel``, shared with the EMER-Fine quality filter; here its load errors become evaluation's
one-line input errors naming ``--wheel-dir``.
"""

from __future__ import annotations

from core.wheel import LEVELS, WHEELS, Wheel, WheelError, build_wheel
from core.wheel import load_wheel as _load_wheel
from evaluation.tables import EvalInputError

__all__ = ["LEVELS", "WHEELS", "Wheel", "build_wheel", "load_wheel"]


def load_wheel(folder: str) -> Wheel:
    """Load the wheel folder (JSON if present, else built from the spreadsheets)."""
    try:
        return _load_wheel(folder, "--wheel-dir")
    except WheelError as err:
        raise EvalInputError(str(err)) from err
