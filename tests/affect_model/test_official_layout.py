"""The official AffectGPT layout (model.layout affectgpt): prompt, sampling, heads, hybrid target, model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from affect_model.model.affectgpt import AffectGPT, load_tokenizer
from affect_model.model.media import official_clip_starts, official_indices
from affect_model.model.official import OfficialHeads, head_shapes
from affect_model.model.prompt import IGNORE, SLOT_AUDIO, SLOT_FUSION, SLOT_TEXT, SLOT_VIDEO, PromptBuilder
from affect_model.train.data import MediaProcessor, SampleEncoder, collate
from core.llm.labels import format_ov_answer, parse_ov_answer


@pytest.fixture(scope="module")
def official_cfg(tiny_root):
    from affect_model.model.config import debug_config

    return debug_config(tiny_root, layout="affectgpt", lora=True, max_answer_tokens=64)


@pytest.fixture(scope="module")
def official_tok(official_cfg):
    return load_tokenizer(official_cfg)


# ---------------------------------------------------------------- prompt


def test_official_prompt_renders_byte_equal(official_cfg, official_tok):
    builder = PromptBuilder(official_cfg, official_tok)
    expected = (
        "###Human: The audio and video merged info is: <Multi><MultiHere></Multi>. "
        "The audio content is as follows: <Audio><AudioHere></Audio>. "
        "Meanwhile, we uniformly sample raw frames from the video: <Video><FrameHere></Video>. "
        "The subtitle of this video is: <Subtitle>I can't believe it!</Subtitle>. "
        "Now, please answer my question based on all the provided information. "
        "Please infer the person's emotional state and provide your reasoning process. ###Assistant: "
    )
    question = "Please infer the person's emotional state and provide your reasoning process."
    assert builder.render_official("I can't believe it!", question) == expected


def test_official_ids_bos_slots_and_answer_end(official_cfg, official_tok):
    tok = official_tok
    builder = PromptBuilder(official_cfg, tok)
    enc = builder.encode("hello there", "She is happy.", "description")
    ids, slots, labels = enc["input_ids"], enc["slot_ids"], enc["labels"]
    assert tok.bos_token == "<|im_start|>" and ids[0] == tok.bos_token_id  # Qwen: as official
    vocab = tok.get_vocab()
    for token, slot in (
        ("<FrameHere>", SLOT_VIDEO),
        ("<AudioHere>", SLOT_AUDIO),
        ("<MultiHere>", SLOT_FUSION),
    ):
        at = [i for i, t in enumerate(ids) if t == vocab[token]]
        assert len(at) == 1 and slots[at[0]] == slot  # one token per modality
    assert sum(s != SLOT_TEXT for s in slots) == 3
    answer = [t for t in labels if t != IGNORE]
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == "She is happy.###"
    prompt_text = tok.decode(ids[1 : len(ids) - len(answer)])
    assert prompt_text == builder.render_official(
        "hello there", "Please infer the person's emotional state and provide your reasoning process."
    )
    ov = builder.encode("hello", None, "ovlabel")
    assert "Please recognize all possible emotional states of the character. ###Assistant: " in tok.decode(
        ov["input_ids"]
    )


def test_ov_answer_round_trip_and_descriptions_are_not_answers():
    text = format_ov_answer(["Happy", "excited "])
    assert text == "The character's emotional state is Happy, excited."
    assert parse_ov_answer(text + "###") == ["happy", "excited"]
    assert parse_ov_answer("The person smiles, so the character's emotional state is happy.") is None


def test_extract_labels_reads_ov_answers_without_the_llm():
    from evaluation.extract import extract_labels

    asked = []

    def complete(requests):
        asked.extend(requests)
        return ["['sad']"] * len(requests)

    labels, bad = extract_labels(
        ["The character's emotional state is angry, annoyed.", "He cries quietly."], complete
    )
    assert labels == [["angry", "annoyed"], ["sad"]] and bad == [] and len(asked) == 1


# ---------------------------------------------------------------- sampling


def test_official_frame_indices():
    assert official_indices(20, 8) == [0, 2, 5, 7, 10, 12, 15, 17]  # arange(0, 20, 2.5)
    assert official_indices(5, 8) == [0, 1, 2, 3, 4, 4, 4, 4]  # last frame repeated
    assert official_indices(8, 8) == list(range(8))
    assert official_indices(0, 8) == []


def test_official_audio_clip_starts():
    sr, clip = 16000, 32000
    starts = official_clip_starts(10 * sr, clip, 8, sr)  # 10 s: clips overlap, last ends at the end
    assert starts[0] == 0 and starts[-1] == 8 * sr and len(starts) == 8
    assert all(b - a < clip for a, b in zip(starts, starts[1:]))
    assert starts == [int(i * (8 / 7) * sr) for i in range(8)]
    assert official_clip_starts(2 * sr, clip, 8, sr) == [0] * 8  # 2 s (also what < 2 s is padded to)


def test_official_media_processor(official_cfg, rows):
    media = MediaProcessor(official_cfg)
    pixels, fmask = media.video(rows[0]["frames"])  # 3 frames of 40 x 48: resized, last repeated
    assert pixels.shape == (8, 3, 32, 32) and bool(fmask.all())
    assert torch.equal(pixels[2], pixels[7])
    feats, cmask = media.audio(np.ones(8000, dtype=np.float32) * 0.1)  # 0.5 s: padded to one 2-s clip
    assert feats.shape == (8, 32000) and bool(cmask.all())
    assert torch.equal(feats[0], feats[7])


# ---------------------------------------------------------------- heads


def test_attention_pooling_is_a_plain_weighted_sum():
    torch.manual_seed(0)
    heads = OfficialHeads(video=6, audio=4, llm=5)
    v, a = torch.randn(2, 8, 6), torch.randn(2, 8, 4)
    out = heads(v, a)
    assert {k: tuple(t.shape) for k, t in out.items()} == {k: (2, 1, 5) for k in ("video", "audio", "fusion")}
    scores = heads.video_attention_mlp(v)  # [2, 8, 1], no softmax
    want = heads.affectgpt_proj((v * scores).sum(1))
    assert torch.allclose(out["video"][:, 0], want, atol=1e-6)
    vm, am = heads.multi_video_embs(v.mean(1)), heads.multi_audio_embs(a.mean(1))
    w = heads.fc_att(heads.attention_mlp(torch.cat([vm, am], 1)))
    fused = heads.multi_llama_proj(vm * w[:, :1] + am * w[:, 1:])
    assert torch.allclose(out["fusion"][:, 0], fused, atol=1e-6)
    assert head_shapes(768, 1024, 3584)["attention_mlp"] == (2048, 1024)
    assert head_shapes(768, 1024, 3584)["multi_video_embs"] == (768, 1024)


def test_official_model_trains_heads_and_lora_only(official_cfg, rows):
    torch.manual_seed(0)
    model = AffectGPT(official_cfg).train()
    enc = SampleEncoder(official_cfg, model.tokenizer, MediaProcessor(official_cfg))
    batch = collate([enc(r) for r in rows], model.tokenizer.pad_token_id)
    out = model(**batch)
    assert math.isfinite(out.loss.item())
    out.loss.backward()
    trainable = dict(model.named_trainable_parameters())
    heads = {n.split(".")[1] for n in trainable if n.startswith("heads.")}
    assert heads == set(head_shapes(1, 1, 1))
    assert all(n.startswith("heads.") or ".lora_" in n for n in trainable)
    assert all(p.grad is not None for p in trainable.values())
    assert model.heads.affectgpt_proj.in_features == 16  # the tiny CLIP's projection_dim, not its width
    assert model.video_qformer is None and model.fusion is None


# ---------------------------------------------------------------- hybrid target


def test_hybrid_batches_hold_both_targets(official_cfg, official_tok, make_rows):
    rows = make_rows(12)
    enc = SampleEncoder(official_cfg, official_tok, media=None)
    cached = [
        dict(r, video_embeds=np.zeros((8, 1, 16), np.float32), audio_embeds=np.zeros((8, 1, 32), np.float32))
        for r in rows
    ]
    batch = collate([enc(r) for r in cached], official_tok.pad_token_id)
    answers = [
        official_tok.decode([t for t in row.tolist() if t != IGNORE], skip_special_tokens=True)
        for row in batch["labels"]
    ]
    ov = [a for a in answers if a.startswith("The character's emotional state is")]
    desc = [a for a in answers if not a.startswith("The character's emotional state is")]
    assert ov and desc
    prompts = [official_tok.decode(ids) for ids in batch["input_ids"]]
    asks_ov = ["Please recognize all possible emotional states" in p for p in prompts]
    assert asks_ov == [a.startswith("The character's emotional state is") for a in answers]
    for row, answer in zip(rows, answers):
        if answer in ov:
            assert parse_ov_answer(answer) == [x.lower() for x in row["ov_labels"]]
        else:
            assert answer == row["description_en"] + "###"
    # the next epoch draws again (reproducibly): not every row asks the same question twice
    again = [enc._kind(r, peek=True) for r in rows]
    fresh = SampleEncoder(official_cfg, official_tok)
    first = [fresh._kind(r) for r in rows]
    assert first == ["ovlabel" if x else "description" for x in asks_ov] and again != first
