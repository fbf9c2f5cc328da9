"""The video signal: faces per sampled frame (MTCNN) and the main face's expression probabilities.

MTCNN is facenet-pytorch's (its shipped ``pnet/rnet/onet.pt`` state dicts; nothing is downloaded),
built by ``load_mtcnn`` (also the clips job's face filter, ``pipelines.clips.faces``). Those files
are loaded with ``torch.load(..., weights_only=True)`` here first, so a file that holds anything but
tensors is refused before facenet-pytorch's own ``torch.load`` (whose default is
``weights_only=True`` from torch 2.6 on) reads it again. The main face of a frame is the most
probable detection; its grayscale crop goes to the FER2013 mini-Xception
(``pipelines.signals.expression``). ``describe`` turns the per-frame results into one sentence.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from pipelines.signals.expression import LABELS, build_classifier, prepare

MIN_FACE_PROB = 0.9  # MTCNN's final score a detection needs to count as a face
MIN_FACE_PX = 20  # MTCNN's smallest face size (its default)
MARGIN = 0.1  # crop margin around the box, as a share of its size (fer pads its crops too)


@dataclass
class FrameFaces:
    """One frame: how many faces, and the expression probabilities of the main one (None: no face)."""

    faces: int
    probs: list[float] | None


class FaceReader:
    """MTCNN + the expression classifier, loaded once (per Ray actor)."""

    def __init__(self) -> None:
        import torch  # heavy: torch

        self.mtcnn = load_mtcnn()
        self.classifier = build_classifier()
        self.torch = torch

    def frame(self, jpeg: bytes) -> FrameFaces:
        from PIL import Image

        img = Image.open(io.BytesIO(jpeg)).convert("RGB")
        found = detect_faces(self.mtcnn, img)
        if not found:
            return FrameFaces(0, None)
        face = _crop(np.asarray(img.convert("L")), found[0][0])
        if face is None:
            return FrameFaces(len(found), None)
        out = self.classifier(self.torch.from_numpy(prepare([face])))[0]
        return FrameFaces(len(found), [round(float(p), 4) for p in out])

    def read(self, frames: list[bytes]) -> list[FrameFaces]:
        return [self.frame(f) for f in frames]


def load_mtcnn():
    """facenet-pytorch's MTCNN (all faces of a frame, the smallest ``MIN_FACE_PX``) with its shipped
    weights, each file read with ``torch.load(weights_only=True)``; torch set to one thread."""
    import torch  # heavy: torch
    from facenet_pytorch import MTCNN  # heavy: torch, torchvision

    # One thread: the actor is one of several processes on the node's cores, and MTCNN's many
    # small convolutions ran ~30x slower with torch's default thread pool on a busy 2-core box.
    torch.set_num_threads(1)
    data = Path(str(resources.files("facenet_pytorch") / "data"))
    states = {n: torch.load(data / f"{n}.pt", weights_only=True) for n in ("pnet", "rnet", "onet")}
    mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE_PX, device="cpu").eval()
    for name, state in states.items():
        getattr(mtcnn, name).load_state_dict(state)
    return mtcnn


def detect_faces(mtcnn, img) -> list[tuple[np.ndarray, float]]:
    """The faces MTCNN finds in one RGB image (PIL or HxWx3 uint8) with a score of at least
    ``MIN_FACE_PROB``: ``(box [x1, y1, x2, y2], score)``, the most probable first."""
    return _kept(*mtcnn.detect(img))


def detect_faces_batch(mtcnn, frames: np.ndarray) -> list[list[tuple[np.ndarray, float]]]:
    """``detect_faces`` for each of ``[N, H, W, 3]`` uint8 frames of one size, in one MTCNN call."""
    boxes, probs = mtcnn.detect(frames)
    return [_kept(b, p) for b, p in zip(boxes, probs)]


def _kept(boxes, probs) -> list[tuple[np.ndarray, float]]:
    if boxes is None:
        return []
    found = [(np.asarray(b, dtype=np.float64), float(p)) for b, p in zip(boxes, probs) if p is not None]
    return sorted((f for f in found if f[1] >= MIN_FACE_PROB), key=lambda f: -f[1])


def _crop(gray: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = MARGIN * (x2 - x1), MARGIN * (y2 - y1)
    h, w = gray.shape
    x1, y1 = max(int(x1 - mx), 0), max(int(y1 - my), 0)
    x2, y2 = min(int(x2 + mx), w), min(int(y2 + my), h)
    return gray[y1:y2, x1:x2] if x2 - x1 >= 4 and y2 - y1 >= 4 else None


def summary(frames: list[FrameFaces]) -> dict:
    """The numbers of ``face_expressions``: faces per frame, per-label mean probability over the
    frames with a main face, and the frames' probabilities."""
    probs = [f.probs for f in frames if f.probs is not None]
    mean = np.mean(probs, axis=0).tolist() if probs else None
    return {
        "labels": list(LABELS),
        "faces_per_frame": [f.faces for f in frames],
        "mean": None if mean is None else [round(float(p), 4) for p in mean],
        "per_frame": [f.probs for f in frames],
    }


def top_label(expr: dict | None) -> str | None:
    """The classifier's top expression over the clip (None: no face was seen)."""
    if not expr or not expr.get("mean"):
        return None
    mean = expr["mean"]
    return expr["labels"][int(np.argmax(mean))]


def describe(expr: dict) -> str:
    """One sentence, e.g. "one face in 7 of 8 frames; mostly sad (0.61), some neutral (0.22)"."""
    counts, n = expr["faces_per_frame"], len(expr["faces_per_frame"])
    seen = sum(1 for c in counts if c > 0)
    if not seen:
        return f"no face is visible in any of the {n} sampled frames, so no facial expression can be read"
    most = max(set(c for c in counts if c > 0), key=lambda c: (counts.count(c), -c))
    who = {1: "one face", 2: "two faces", 3: "three faces"}.get(most, f"{most} faces")
    text = f"{who} in {seen} of {n} frames"
    if expr["mean"]:
        ranked = sorted(zip(expr["labels"], expr["mean"]), key=lambda lp: -lp[1])
        (l1, p1), (l2, p2) = ranked[0], ranked[1]
        text += f"; facial expression mostly {l1} ({p1:.2f})"
        if p2 >= 0.15:
            text += f", some {l2} ({p2:.2f})"
    return text
