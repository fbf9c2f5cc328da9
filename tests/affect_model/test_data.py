"""EMER-Coarse / EMER-Fine files, the Fine split, media preprocessing, prompts, batches, config checks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from affect_model.model.affectgpt import load_tokenizer
from affect_model.model.config import ModelConfig
from affect_model.model.media import clip_starts, uniform_indices
from affect_model.model.prompt import IGNORE, SLOT_AUDIO, SLOT_FUSION, SLOT_VIDEO, PromptBuilder
from affect_model.train.data import (
    COARSE_COLUMNS,
    MediaProcessor,
    SampleEncoder,
    collate,
    load_fine,
    read_coarse,
    read_fine_csv,
    split_fine,
    write_coarse,
)
from core import storage
from core.config import ConfigError
from core.schema import decode_audio

# ---------------------------------------------------------------- EMER-Fine split


def test_fine_split_is_266_66_and_deterministic():
    names = [f"sample_{i:08d}" for i in range(332)]
    train, test = split_fine(names)
    assert (len(train), len(test)) == (266, 66)
    assert not set(train) & set(test) and set(train) | set(test) == set(names)
    assert split_fine(list(reversed(names))) == (train, test)  # input order does not matter
    assert split_fine(names, seed=0) == (train, test)
    assert split_fine(names, seed=1)[1] != test
    assert train == sorted(train) and test == sorted(test)
    assert [len(x) for x in split_fine(names[:100])] == [80, 20]  # proportional elsewhere
    with pytest.raises(ValueError, match="test_count"):
        split_fine(names[:3], test_count=5)


def test_read_fine_csv_and_load_fine(tmp_path, make_rows):
    rows = make_rows(6)
    csv = tmp_path / "fine.csv"
    storage.write_table(
        pa.table({"name": [r["name"] for r in rows], "english": [f"fine description {i}" for i in range(6)]}),
        str(csv),
    )
    assert read_fine_csv(str(csv))[rows[2]["name"]] == "fine description 2"
    media = tmp_path / "media.parquet"
    write_coarse([dict(r, description_en="") for r in rows], str(media))
    train, test = split_fine([r["name"] for r in rows])
    got = load_fine(str(csv), str(media), split="test")
    assert [g["name"] for g in got] == test and len(test) == 1
    assert got[0]["description_en"].startswith("fine description") and got[0]["frames"]
    assert len(load_fine(str(csv), str(media), split="all")) == 6
    write_coarse(rows[:3], str(media))
    with pytest.raises(ValueError, match="no media for 3 EMER-Fine"):
        load_fine(str(csv), str(media), split="all")
    storage.write_table(pa.table({"name": ["a"], "chinese": ["x"]}), str(tmp_path / "bad.csv"))
    with pytest.raises(ValueError, match="missing column.*english"):
        read_fine_csv(str(tmp_path / "bad.csv"))


# ---------------------------------------------------------------- EMER-Coarse Parquet


def _check_round_trip(uri: str, make_rows) -> None:
    rows = make_rows(3)
    rows[1]["audio"] = rows[1]["audio"].tobytes()  # raw float32 bytes are accepted too
    assert write_coarse(rows, uri) == 3
    back = read_coarse(uri, columns=COARSE_COLUMNS)
    assert [b["name"] for b in back] == [r["name"] for r in rows]
    for r, b in zip(rows, back):
        assert b["frames"] == r["frames"] and b["ov_labels"] == r["ov_labels"]
        assert b["subtitle_zh"] == r["subtitle_zh"] and b["description_en"] == r["description_en"]
        # stored as the annotation stores it: 16-bit FLAC (core.schema), so within one quantisation step
        np.testing.assert_allclose(decode_audio(b["audio"]), decode_audio(r["audio"]), rtol=0, atol=2 / 32768)
        assert bytes(b["audio"][:4]) == b"fLaC"


def test_coarse_round_trip_local(tmp_path, make_rows):
    _check_round_trip(str(tmp_path / "coarse" / "part-0.parquet"), make_rows)
    storage.write_table(pa.table({"name": ["x"]}), str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match="missing column.*description_en"):
        read_coarse(str(tmp_path / "bad.parquet"))


def test_coarse_round_trip_s3(request, make_rows):
    try:
        s3 = request.getfixturevalue("s3")
    except pytest.FixtureLookupError:
        pytest.skip("the s3 fixture (tests/conftest.py, moto) is not available")
    _check_round_trip(s3.uri("coarse/part-0.parquet"), make_rows)


def test_decode_audio_forms():
    wave = np.arange(5, dtype=np.float32)
    for form in (wave, wave.tolist(), wave.tobytes()):
        np.testing.assert_array_equal(decode_audio(form), wave)
    assert decode_audio(None).size == 0
    with pytest.raises(ValueError, match="nor raw float32"):
        decode_audio(b"abc")


# ---------------------------------------------------------------- media


def test_sampling_helpers():
    assert uniform_indices(3, 4) == [0, 1, 1, 2] and uniform_indices(0, 4) == []
    assert uniform_indices(16, 4) == [0, 5, 10, 15]
    assert clip_starts(5 * 16000, 32000, 3) == [0, 32000, 64000]
    assert clip_starts(10 * 16000, 32000, 3) == [0, 64000, 128000]  # spread over longer audio
    assert clip_starts(0, 32000, 3) == []


def test_media_processor(tiny_cfg, make_rows):
    media = MediaProcessor(tiny_cfg)
    rows = make_rows(2)
    pixels, mask = media.video(rows[0]["frames"])
    assert pixels.shape == (tiny_cfg.frames, 3, 32, 32) and mask.all()
    pixels, mask = media.video([])
    assert pixels.shape == (tiny_cfg.frames, 3, 32, 32) and not mask.any() and not pixels.any()
    with pytest.raises(ValueError, match="not a decodable image"):
        media.video([b"not a jpeg"])
    feats, mask = media.audio(np.zeros(16000 * 3, dtype=np.float32))  # 3 s -> 2 clips of 2 s
    assert feats.shape == (tiny_cfg.audio_clips, 16, 200) and mask.tolist() == [True, True, False]
    _, mask = media.audio([])
    assert not mask.any()


# ---------------------------------------------------------------- prompts and batches


@pytest.fixture(scope="module")
def tokenizer(tiny_cfg):
    return load_tokenizer(tiny_cfg)


def test_prompt_slots_and_lines(tiny_cfg, tokenizer):
    on = PromptBuilder(tiny_cfg.replace(fusion="qformer"), tokenizer)
    off = PromptBuilder(tiny_cfg.replace(use_subtitle=False), tokenizer)
    assert "Audio and video together" in on.user_text(
        "hi"
    ) and "Audio and video together" not in off.user_text("hi")
    assert "Subtitle" in on.user_text("hi") and "Subtitle" not in off.user_text("hi")
    enc = on.encode("a subtitle that says {video} twice {audio}", "It is fine.")
    slots = torch.tensor(enc["slot_ids"])
    assert (slots == SLOT_VIDEO).sum() == tiny_cfg.video_queries  # subtitle braces are only text
    assert (slots == SLOT_AUDIO).sum() == tiny_cfg.audio_queries
    assert (slots == SLOT_FUSION).sum() == tiny_cfg.fusion_queries
    assert "{video}" in tokenizer.decode(enc["input_ids"])
    long = on.encode("word " * 200)
    assert len(long["input_ids"]) < len(enc["input_ids"]) + tiny_cfg.max_subtitle_tokens
    assert all(label == IGNORE for label in long["labels"])
    plain = PromptBuilder(tiny_cfg.replace(chat_format="plain"), tokenizer).render("hi")
    assert "USER:" in plain and plain.endswith("ASSISTANT:") and "<|im_start|>" not in plain


def test_sample_encoder_and_collate(tiny_cfg, tokenizer, make_rows):
    enc = SampleEncoder(tiny_cfg, tokenizer, MediaProcessor(tiny_cfg))
    rows = make_rows(2)
    items = [enc(r) for r in rows]
    left = collate(items, tokenizer.pad_token_id, "left")
    right = collate(items, tokenizer.pad_token_id, "right")
    short = int(left["attention_mask"].sum(1).argmin())
    assert left["attention_mask"][short, 0] == 0 and right["attention_mask"][short, -1] == 0
    assert left["names"] == [r["name"] for r in rows]
    assert torch.equal(
        left["input_ids"][left["attention_mask"] == 1], right["input_ids"][right["attention_mask"] == 1]
    )
    assert (right["labels"][right["attention_mask"] == 0] == IGNORE).all()
    assert left["pixel_values"].shape[:2] == (2, tiny_cfg.frames)
    prompt_only = enc(rows[0], with_answer=False)
    assert (prompt_only["labels"] == IGNORE).all()
    with pytest.raises(ValueError, match="empty target 'description_en'"):
        enc(dict(rows[0], description_en="  "))
    with pytest.raises(ValueError, match="no MediaProcessor"):
        SampleEncoder(tiny_cfg, tokenizer)(rows[0])


# ---------------------------------------------------------------- config


def test_config_checks_and_presets():
    from emer.runconfig import load_run_config

    v1 = load_run_config(["stage1", "affectgpt-v1"]).model
    official = load_run_config(["stage1", "affectgpt-qwen25"]).model
    for preset in (v1, official):
        assert preset.frames == 8
        assert ModelConfig.from_dict(preset.to_dict()) == preset
    assert v1.layout == "qformer" and v1.video_queries == 32 and v1.audio_queries == 8
    assert v1.fusion == "none" and not v1.lora
    assert official.layout == "affectgpt" and official.lora and official.fusion == "attention"
    assert official.slot_lengths() == {"video": 1, "audio": 1, "fusion": 1}
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict({"layout": "affectgpt", "fusion": "qformer", "use_audio": False})
    text = str(err.value)
    assert "needs model.use_video and model.use_audio" in text and "takes none or attention" in text
    assert "set model.chat_format = 'affectgpt'" in text
    with pytest.raises(ConfigError, match="model.target = 'hybrid': the OV-label question needs"):
        ModelConfig(target="hybrid")
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict({"fusion": "concat", "qformer_heads": 5, "frames": 0})
    text = str(err.value)
    assert (
        "model.fusion = 'concat'" in text
        and "model.qformer_hidden = 768" in text
        and "model.frames = 0" in text
    )
    with pytest.raises(ConfigError, match="must contain the slot {audio}"):
        ModelConfig(prompt="{video} {subtitle}")
    with pytest.raises(ConfigError, match="pre-fusion needs both"):
        ModelConfig(fusion="qformer", use_audio=False, prompt="{video}{fusion}{subtitle}")
    assert ModelConfig(use_audio=False, prompt="{video} {subtitle}").slot_lengths()["audio"] == 0


def test_audio_as_stored_by_annotation_decodes():
    """`emer annotate` stores audio as 16 kHz 16-bit FLAC bytes; the model's reader takes them as is."""
    import numpy as np

    from core.schema import encode_audio

    wave = (0.5 * np.sin(np.linspace(0, 200, 16000))).astype(np.float32)
    back = decode_audio(encode_audio(wave))
    assert back.shape == wave.shape
    assert np.abs(back - wave).max() < 2 / 32768
    assert np.array_equal(decode_audio(wave.tobytes()), wave)
    with pytest.raises(ValueError, match="neither FLAC/WAV/OGG nor raw float32"):
        decode_audio(b"abc")
