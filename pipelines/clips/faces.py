"""The face filter of the clips job: one face in most sampled frames, and the same person throughout.

MER2024 keeps a segment when most of its frames hold exactly one face and the faces belong to one
person. ``FaceFilter.check`` takes a segment's sampled frames (the job samples ``frames`` of them,
``sample_times``) and returns a ``FaceVerdict``: faces per frame, the share of one-face frames, the
identity decision and, for a rejected segment, the reason with its numbers.

Detector: MTCNN (facenet-pytorch's shipped weights, loaded safely by
``pipelines.signals.faces.load_mtcnn``), or YuNet through OpenCV's ``cv2.FaceDetectorYN`` when
``detector: yunet`` and ``yunet_model`` names its ONNX file (OpenCV's wheel does not ship one).
Identity: with ``identity: embedding`` and ``embedding_model`` naming a facenet-pytorch
``InceptionResnetV1`` state dict (e.g. its VGGFace2 weights, downloaded by you; read with
``weights_only=True``), consecutive one-face frames must have a cosine similarity of at least
``min_similarity``. Without a model (``identity: track``), face-track continuity stands in: between
consecutive one-face frames the box centre may move at most ``max_track_jump`` face sizes and the
face size change at most ``max_size_change`` times; the card says which method decided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import Config, check_choice, check_range

log = logging.getLogger(__name__)

DETECTORS = ("mtcnn", "yunet")
IDENTITIES = ("track", "embedding")
YUNET_MIN_SCORE = 0.9  # as MTCNN's MIN_FACE_PROB
EMBED_PX = 160  # InceptionResnetV1's input size
CROP_MARGIN = 0.1


@dataclass(frozen=True)
class FaceFilterConfig(Config):
    """Which segments keep their faces (``clips.faces``)."""

    min_one_face_fraction: float = 0.5  # share of sampled frames that must hold exactly one face
    frames: int = 8  # frames sampled per segment
    identity: str = "track"  # "track" (face-track continuity) | "embedding" (embedding_model)
    embedding_model: str = ""  # path of an InceptionResnetV1 state dict (.pt) for identity: embedding
    min_similarity: float = 0.5  # embedding: cosine similarity of consecutive one-face frames
    max_track_jump: float = 1.0  # track: box-centre move between one-face frames, in face sizes
    max_size_change: float = 1.6  # track: ratio of face sizes between one-face frames
    detector: str = "mtcnn"  # "mtcnn" (shipped weights) | "yunet" (yunet_model)
    yunet_model: str = ""  # path of YuNet's ONNX file (OpenCV Zoo's face_detection_yunet_*.onnx)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "min_one_face_fraction", self.min_one_face_fraction, 0.0, 1.0)
        check_range(out, "frames", self.frames, 1, 64)
        check_choice(out, "identity", self.identity, IDENTITIES)
        check_choice(out, "detector", self.detector, DETECTORS)
        check_range(out, "min_similarity", self.min_similarity, -1.0, 1.0)
        check_range(out, "max_track_jump", self.max_track_jump, 0.0, 100.0)
        check_range(out, "max_size_change", self.max_size_change, 1.0, 100.0)
        if self.identity == "embedding":
            _need_file(out, "embedding_model", self.embedding_model, "an InceptionResnetV1 state dict")
        if self.detector == "yunet":
            _need_file(out, "yunet_model", self.yunet_model, "YuNet's ONNX file (face_detection_yunet_*)")
        return out


def _need_file(out: list[str], key: str, value: str, what: str) -> None:
    if not value:
        out.append(f"{key} is empty: set it to the path of {what}")
    elif not Path(value).is_file():
        out.append(f"{key} = {value!r}: no such file; set it to the path of {what}")


@dataclass(frozen=True)
class FaceVerdict:
    """What the face filter decided about one segment (``reason`` None: kept)."""

    faces_per_frame: list[int]
    one_face_fraction: float
    same_person: bool | None  # None: fewer than two one-face frames to compare
    identity_method: str  # "embedding" | "track"
    reason: str | None
    identity_score: float | None = None  # worst track jump (face sizes) or lowest similarity


def sample_times(start: float, end: float, n: int) -> list[float]:
    """``n`` frame times spread over ``[start, end]``: the middles of ``n`` equal parts."""
    step = (end - start) / n
    return [round(start + (i + 0.5) * step, 3) for i in range(n)]


class FaceFilter:
    """The detector (and the embedding model, if configured), loaded once per actor."""

    def __init__(self, cfg: FaceFilterConfig | None = None) -> None:
        self.cfg = cfg or FaceFilterConfig()
        self.detect = _yunet(self.cfg.yunet_model) if self.cfg.detector == "yunet" else _mtcnn()
        self.embedder = _Embedder(self.cfg.embedding_model) if self.cfg.identity == "embedding" else None

    def faces(self, frames: np.ndarray) -> list[list[tuple[np.ndarray, float]]]:
        """The faces of each RGB frame: ``(box [x1, y1, x2, y2], score)``, the most probable first."""
        return self.detect(np.ascontiguousarray(frames, dtype=np.uint8))

    def check(self, frames: np.ndarray) -> FaceVerdict:
        """Decide one segment from its sampled frames (``[N, H, W, 3]`` RGB uint8)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"FaceFilter.check: frames of shape {frames.shape}: pass [N, H, W, 3] RGB")
        found = self.faces(frames)
        counts = [len(f) for f in found]
        n, ones = len(counts), sum(1 for c in counts if c == 1)
        method = "embedding" if self.embedder else "track"
        singles = [(frames[i], f[0][0]) for i, f in enumerate(found) if len(f) == 1]
        same, score, why = self._identity(singles)
        verdict = dict(faces_per_frame=counts, one_face_fraction=round(ones / n, 4), identity_method=method)
        reason = None
        if not any(counts):
            reason = f"no face in any sampled frame ({n} sampled)"
        elif ones / n < self.cfg.min_one_face_fraction:
            reason = (
                f"one face in {ones} of {n} sampled frames (needs >= {self.cfg.min_one_face_fraction}); "
                f"faces per frame {counts}"
            )
        elif same is False:
            reason = f"faces of different people ({why})"
        return FaceVerdict(**verdict, same_person=same, reason=reason, identity_score=score)

    def _identity(self, singles: list) -> tuple[bool | None, float | None, str]:
        if len(singles) < 2:
            return None, None, ""
        if self.embedder is not None:
            embs = [self.embedder(frame, box) for frame, box in singles]
            sims = [float(np.dot(a, b)) for a, b in zip(embs, embs[1:])]
            low = min(sims)
            why = f"embedding similarity {low:.3f} of consecutive faces, needs >= {self.cfg.min_similarity}"
            return low >= self.cfg.min_similarity, round(low, 4), why
        return self._track([box for _, box in singles])

    def _track(self, boxes: list[np.ndarray]) -> tuple[bool, float, str]:
        jumps, sizes = [], []
        for a, b in zip(boxes, boxes[1:]):
            sa, sb = _size(a), _size(b)
            jumps.append(float(np.linalg.norm(_centre(a) - _centre(b))) / max(sa, sb, 1e-6))
            sizes.append(max(sa, sb) / max(min(sa, sb), 1e-6))
        jump, size = max(jumps), max(sizes)
        ok = jump <= self.cfg.max_track_jump and size <= self.cfg.max_size_change
        why = (
            f"track jump {jump:.2f} face sizes, needs <= {self.cfg.max_track_jump}; size change "
            f"x{size:.2f}, needs <= {self.cfg.max_size_change}; between consecutive one-face frames"
        )
        return ok, round(jump, 4), why


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _size(box: np.ndarray) -> float:
    return float(np.sqrt(max(box[2] - box[0], 0) * max(box[3] - box[1], 0)))


def _mtcnn():
    from pipelines.signals.faces import detect_faces_batch, load_mtcnn  # heavy: torch, facenet-pytorch

    mtcnn = load_mtcnn()
    return lambda frames: detect_faces_batch(mtcnn, frames)


def _yunet(path: str):
    import cv2  # heavy: opencv

    if not Path(path).is_file():
        raise FileNotFoundError(f"faces.yunet_model = {path!r}: no such file (YuNet's ONNX file)")
    net = cv2.FaceDetectorYN.create(path, "", (320, 320), YUNET_MIN_SCORE, 0.3, 5000)

    def detect(rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        net.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, faces = net.detect(np.ascontiguousarray(rgb[..., ::-1]))
        rows = [] if faces is None else faces
        found = [(np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]]), float(f[-1])) for f in rows]
        return sorted((f for f in found if f[1] >= YUNET_MIN_SCORE), key=lambda f: -f[1])

    return lambda frames: [detect(f) for f in frames]


class _Embedder:
    """facenet-pytorch's InceptionResnetV1 from a state dict file: a face crop -> 512 unit floats."""

    def __init__(self, path: str) -> None:
        import torch  # heavy: torch
        from facenet_pytorch import InceptionResnetV1  # heavy: torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        self.net = InceptionResnetV1(pretrained=None, classify=False).eval()
        self.net.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})
        self.torch = torch

    def __call__(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        from PIL import Image

        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = CROP_MARGIN * (x2 - x1), CROP_MARGIN * (y2 - y1)
        h, w = frame.shape[:2]
        crop = frame[max(int(y1 - my), 0) : min(int(y2 + my), h), max(int(x1 - mx), 0) : min(int(x2 + mx), w)]
        face = np.asarray(Image.fromarray(crop).resize((EMBED_PX, EMBED_PX)), dtype=np.float32)
        x = self.torch.from_numpy((face - 127.5) / 128.0).permute(2, 0, 1).unsqueeze(0)
        with self.torch.no_grad():
            return self.net(x)[0].numpy()
