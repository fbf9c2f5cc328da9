"""Source videos for the clips tests, made with ffmpeg in a few hundred milliseconds each.

Pictures: ``face`` (scikit-image's astronaut.png: one real face), ``gray`` (no face) or
``counter`` (each frame's brightness is 2.5 x its frame index at 10 fps, so a decoded frame tells
which source frame it is). Audio: ``tone`` (a sine), ``speech`` (espeak-ng sentences with pauses),
or none.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

FPS = 10
SENTENCES = (
    "The weather was lovely this morning, so we walked along the river for an hour.",
    "Then we sat in the sun and talked about our plans for the summer holidays.",
)


def _face_png(dest: Path) -> Path:
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("skimage")  # the photo file only: skimage is installed --no-deps
    if spec is None:
        pytest.skip("scikit-image is not installed (make setup installs it; its astronaut.png is the face)")
    photo = Path(next(iter(spec.submodule_search_locations)), "data", "astronaut.png")
    Image.open(photo).convert("RGB").resize((256, 256)).save(dest)
    return dest


def speech_wav(dest: Path, gap_s: float = 0.6) -> Path:
    """Two espeak-ng sentences of one voice with a ``gap_s`` pause, 1 s of silence before and after."""
    parts = []
    for k, text in enumerate(SENTENCES):
        wav = dest.with_name(f"{dest.stem}_{k}.wav")
        subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), text], check=True, capture_output=True)
        parts.append(wav)
    filt = f"[0]adelay=1000[a];[1]adelay={int(gap_s * 1000)}[b];[a][b]concat=n=2:v=0:a=1,apad=pad_dur=1"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(parts[0]), "-i", str(parts[1]), "-filter_complex", filt]
    subprocess.run([*cmd, "-ar", "16000", "-ac", "1", str(dest)], check=True, capture_output=True)
    return dest


def make_video(dest: Path, seconds: float, picture: str = "face", audio: str | Path | None = "tone") -> Path:
    """An H.264/AAC mp4 of ``seconds`` at ``FPS`` with the given picture and audio."""
    cmd = ["ffmpeg", "-v", "error", "-y"]
    if picture == "face":
        cmd += ["-loop", "1", "-framerate", str(FPS), "-i", str(_face_png(dest.with_suffix(".png")))]
    elif picture == "gray":
        cmd += ["-f", "lavfi", "-i", f"color=c=gray:s=256x256:r={FPS}"]
    else:  # counter
        cmd += ["-f", "lavfi", "-i", f"color=c=black:s=64x64:r={FPS},geq=lum='N*2.5':cb=128:cr=128"]
    if audio == "tone":
        cmd += ["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000"]
    elif audio:
        cmd += ["-i", str(audio)]
    cmd += ["-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"]
    cmd += ["-g", "25", "-threads", "1", *(["-c:a", "aac"] if audio else ["-an"]), str(dest)]
    subprocess.run(cmd, check=True, capture_output=True)
    return dest


def gray_means(path: str | Path) -> np.ndarray:
    """The mean brightness of every frame of a video (decoded to 8-bit gray by ffmpeg)."""
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8)
    probe = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height"]
    w, h = subprocess.run(
        [*probe, "-of", "csv=p=0", str(path)], check=True, capture_output=True, text=True
    ).stdout.split(",")
    return frames.reshape(-1, int(w) * int(h)).mean(axis=1)


SRT = """1
00:00:01,000 --> 00:00:03,500
Hello <i>there</i>, how are you?

2
00:00:04,200 --> 00:00:06,700
我很好，谢谢。
"""


def ass_text() -> str:
    """The two lines of ``SRT`` written as ASS by pysubs2 (with an override tag in the first)."""
    import pysubs2

    subs = pysubs2.SSAFile()
    subs.append(pysubs2.SSAEvent(start=1000, end=3500, text="Hello {\\i1}there{\\i0}, how are you?"))
    subs.append(pysubs2.SSAEvent(start=4200, end=6700, text="我很好，谢谢。"))
    return subs.to_string("ass")


VTT = """WEBVTT

00:00:01.000 --> 00:00:03.500
Hello <i>there</i>, how are you?

00:00:04.200 --> 00:00:06.700
我很好，谢谢。
"""
