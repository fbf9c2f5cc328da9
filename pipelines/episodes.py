"""Long generated "episodes": the raw videos the clips job (``emer clips``) starts from.

``write_episodes(out_dir, seed=0)`` writes two episodes (320x240, 10 fps, H.264/AAC mp4, ~20-35 s):
scripted utterances spoken by espeak-ng (``pipelines.speech``) in two voices with pauses between
them, over frames that show real photos shipped by scikit-image (``astronaut.png``: one face;
``camera.png``: another person; ``coffee.png``/``rocket.jpg``: no face; two photos side by side: two
faces). ``episode_vad`` has no subtitles (the VAD + speaker path), ``episode_srt`` has an ``.srt``
whose times are the script's. Each utterance is scripted to be kept or removed by one filter
(``expect``): joined to the one before (same voice, short pause), too short (< 2 s), not one face
(two faces), no face, different people (the photo changes person mid-utterance).

``episodes.json`` records each episode's script: utterances (start, end, text, espeak voice,
speaker, expect) and face layout per time range. An utterance's start and end are where espeak-ng's
speech is (its leading and trailing silence cut off). Everything is deterministic given the seed
(the pauses vary with it); a rerun whose script is unchanged keeps the videos already there.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.schema import SAMPLE_RATE
from pipelines.clips.files import package_file
from pipelines.samples import encode_mp4
from pipelines.speech import Prosody, find_espeak, utterance

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 320, 240, 10
VERSION = 1
VOICES = {  # speaker -> how espeak-ng says it (two voices the speaker encoder keeps apart)
    "A": Prosody(pitch=45, speed=160, voice="en-us"),
    "B": Prosody(pitch=70, speed=170, voice="en+f3"),
}
PHOTOS = {  # name -> (scikit-image file, crop box x1, y1, x2, y2 or None for the whole image)
    "astronaut": ("astronaut.png", (100, 0, 360, 300)),
    "cameraman": ("camera.png", (140, 60, 320, 260)),
    "coffee": ("coffee.png", None),
    "rocket": ("rocket.jpg", None),
}
# (speaker, text, face layout, pause before it in seconds, expect). Layouts: "one:NAME",
# "two:NAME+NAME", "none:NAME" (a photo without a face), "switch:NAME>NAME" (the person changes
# half-way). The pause before a "joined" line is short; lines of two speakers 0.6 s apart stay apart.
SCRIPTS = {
    "episode_vad": [
        ("B", "I finally found the letter you hid in the kitchen drawer.", "one:astronaut", 1.0, "kept"),
        ("B", "And I read every single word of it last night.", "one:astronaut", 0.5, "joined"),
        (
            "A",
            "You had no right to open my things without asking.",
            "two:astronaut+cameraman",
            1.5,
            "not one face",
        ),
        ("B", "Then tell me the truth about where you were in June.", "none:coffee", 0.6, "no face"),
        ("A", "Yes.", "one:cameraman", 1.5, "too short"),
        ("A", "I was with my brother, and he can tell you everything himself.", "one:cameraman", 1.5, "kept"),
        (
            "B",
            "Fine, but I am not going to forget this so easily.",
            "switch:astronaut>cameraman",
            1.5,
            "different people",
        ),
    ],
    "episode_srt": [
        ("A", "Good morning, everyone, and welcome back to the show.", "one:cameraman", 1.0, "kept"),
        ("B", "Today we are talking about the weather in the mountains.", "one:astronaut", 1.2, "kept"),
        ("A", "Really?", "one:cameraman", 1.2, "too short"),
        ("B", "It has been snowing there for three days without a break.", "none:rocket", 1.2, "no face"),
        ("A", "Thank you for listening, and see you next week.", "one:cameraman", 1.2, "kept"),
    ],
}
WITH_SRT = {"episode_srt"}
TAIL_S = 1.0  # silence after the last line
NOISE_RMS = 0.002  # a faint noise floor, so the pauses are not digital silence


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    text: str
    speaker: str  # "A" | "B"
    voice: str  # espeak-ng voice (-v)
    expect: str  # the filter scripted to remove it, "kept", or "joined" (to the line before)


@dataclass(frozen=True)
class FaceSpan:
    start: float
    end: float
    layout: str  # "one" | "two" | "none"
    photos: list[str] = field(default_factory=list)
    place: str = "centre"  # where a single photo stands: "left" | "centre" | "right"


@dataclass(frozen=True)
class Episode:
    name: str
    video: Path
    subtitles: Path | None
    duration_s: float
    utterances: list[Utterance]
    faces: list[FaceSpan]

    def script(self) -> dict:
        """The JSON record of ``episodes.json`` (paths relative to its folder)."""
        data = asdict(self)
        data["video"] = self.video.name
        data["subtitles"] = self.subtitles.name if self.subtitles else None
        return data


def write_episodes(out_dir: str | Path, seed: int = 0) -> list[Episode]:
    """Write the episodes, their ``.srt`` where scripted, and ``episodes.json`` into ``out_dir``."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    planned = plan_episodes(root, seed)
    episodes = [episode for episode, _ in planned]
    info = {"version": VERSION, "seed": seed, "episodes": [e.script() for e in episodes]}
    before = _read_json(root / "episodes.json")
    for episode, track in planned:
        if before != info or not episode.video.exists():
            _atomic_video(episode, track)
        if episode.subtitles is not None:
            _atomic_text(episode.subtitles, srt_text(episode.utterances))
    _atomic_text(root / "episodes.json", json.dumps(info, indent=2, ensure_ascii=False))
    log.info("episodes: %d long videos in %s", len(episodes), root)
    return episodes


def plan_episodes(root: Path, seed: int = 0) -> list[tuple[Episode, np.ndarray]]:
    """Each episode's script (files to be in ``root``) and its 16 kHz audio track; writes nothing."""
    espeak = find_espeak()
    if espeak is None:
        raise RuntimeError("episodes need espeak-ng for their speech: apt-get install -y espeak-ng")
    rng = np.random.default_rng(seed)
    return [_build(Path(root), name, lines, espeak, rng) for name, lines in SCRIPTS.items()]


def _build(root: Path, name: str, lines: list, espeak: str, rng: np.random.Generator):
    voices, utterances, layouts, t = [], [], [], 0.0
    for speaker, text, layout, pause, expect in lines:
        t += round(pause + rng.uniform(-0.05, 0.05), 2)
        voice = utterance(espeak, text, VOICES[speaker])
        end = t + len(voice) / SAMPLE_RATE
        utterances.append(Utterance(round(t, 3), round(end, 3), text, speaker, VOICES[speaker].voice, expect))
        voices.append((int(round(t * SAMPLE_RATE)), voice))
        layouts.append(layout)
        t = end
    duration = round(float(np.ceil((t + TAIL_S) * FPS)) / FPS, 1)
    track = (rng.normal(0, NOISE_RMS, int(duration * SAMPLE_RATE))).astype(np.float32)
    for at, voice in voices:
        track[at : at + len(voice)] += voice
    faces = _face_spans(utterances, layouts, duration)
    subtitles = root / f"{name}.srt" if name in WITH_SRT else None
    return Episode(name, root / f"{name}.mp4", subtitles, duration, utterances, faces), track


def _face_spans(utterances: list[Utterance], layouts: list[str], duration: float) -> list[FaceSpan]:
    """Each line's layout from half-way through the pause before it to half-way through the next;
    a "switch" layout changes person at the line's middle."""
    bounds = [0.0]
    bounds += [round((a.end + b.start) / 2, 1) for a, b in zip(utterances, utterances[1:])]
    bounds += [duration]
    spans = []
    for i, (u, layout) in enumerate(zip(utterances, layouts)):
        kind, names = layout.split(":")
        if kind == "switch":
            first, second = names.split(">")
            middle = round((u.start + u.end) / 2, 1)
            spans.append(FaceSpan(bounds[i], middle, "one", [first], "left"))
            spans.append(FaceSpan(middle, bounds[i + 1], "one", [second], "right"))
        else:
            spans.append(FaceSpan(bounds[i], bounds[i + 1], kind, names.split("+")))
    return spans


def frames_for(spans: list[FaceSpan], duration: float) -> np.ndarray:
    """All frames of an episode: each span's picture, drifting a few pixels sideways over time."""
    n = int(round(duration * FPS))
    out = np.empty((n, HEIGHT, WIDTH, 3), dtype=np.uint8)
    pictures = {id(s): compose(s.layout, s.photos, s.place) for s in spans}
    for i in range(n):
        t = i / FPS
        span = next((s for s in spans if s.start <= t < s.end), spans[-1])
        out[i] = np.roll(pictures[id(span)], int(round(3 * np.sin(0.7 * t))), axis=1)
    return out


def compose(layout: str, photos: list[str], place: str = "centre") -> np.ndarray:
    """One 320x240 RGB frame: a face photo (centred, or in the ``place`` half), two side by side,
    or a photo without a face."""
    from PIL import Image

    canvas = Image.new("RGB", (WIDTH, HEIGHT), (96, 104, 112))
    if layout == "none":
        canvas.paste(photo(photos[0]).resize((WIDTH, HEIGHT), Image.BICUBIC))
    elif layout == "one" and place == "centre":
        img = _fit(photo(photos[0]), WIDTH - 40, HEIGHT - 20)
        canvas.paste(img, ((WIDTH - img.width) // 2, (HEIGHT - img.height) // 2))
    elif layout == "one":
        img = _fit(photo(photos[0]), WIDTH // 2 - 8, HEIGHT - 20)
        left = 0 if place == "left" else WIDTH // 2
        canvas.paste(img, (left + (WIDTH // 2 - img.width) // 2, (HEIGHT - img.height) // 2))
    elif layout == "two":
        for k, name in enumerate(photos[:2]):
            img = _fit(photo(name), WIDTH // 2 - 8, HEIGHT - 20)
            canvas.paste(img, (k * WIDTH // 2 + (WIDTH // 2 - img.width) // 2, (HEIGHT - img.height) // 2))
    else:
        raise ValueError(f"face layout {layout!r}: must be one, two or none")
    return np.asarray(canvas, dtype=np.uint8)


def photo(name: str):
    """A real photo shipped by scikit-image (``PHOTOS``), cropped, as an RGB PIL image."""
    from PIL import Image

    file, box = PHOTOS[name]
    img = Image.open(package_file("skimage", "data", file)).convert("RGB")
    return img.crop(box) if box else img


def _fit(img, width: int, height: int):
    from PIL import Image

    scale = min(width / img.width, height / img.height)
    return img.resize((int(img.width * scale), int(img.height * scale)), Image.BICUBIC)


def srt_text(utterances: list[Utterance]) -> str:
    """SubRip text: one cue per utterance at the script's times (millisecond precision)."""
    cues = [
        f"{i}\n{_srt_time(u.start)} --> {_srt_time(u.end)}\n{u.text}\n" for i, u in enumerate(utterances, 1)
    ]
    return "\n".join(cues)


def _srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _atomic_video(episode: Episode, track: np.ndarray) -> None:
    tmp = episode.video.with_name(f".{episode.video.stem}.tmp.mp4")
    encode_mp4(tmp, frames_for(episode.faces, episode.duration_s), FPS, track)
    os.replace(tmp, episode.video)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
