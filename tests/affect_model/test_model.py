"""AffectGPT on tiny random-weight checkpoints: loss, gradients, labels, caching, fusion, LoRA, generate."""

from __future__ import annotations

import math

import pytest
import torch

from affect_model.model.affectgpt import AffectGPT
from affect_model.model.prompt import IGNORE, SLOT_AUDIO, SLOT_FUSION, SLOT_TEXT, SLOT_VIDEO
from affect_model.train.data import MediaProcessor, SampleEncoder, collate

_ENCODERS: dict = {}


def batch_for(model: AffectGPT, rows, with_answer=True, padding_side="right"):
    key = (model.config, id(model.tokenizer))
    if key not in _ENCODERS:
        _ENCODERS[key] = SampleEncoder(model.config, model.tokenizer, MediaProcessor(model.config))
    enc = _ENCODERS[key]
    return collate(
        [enc(r, with_answer=with_answer) for r in rows], model.tokenizer.pad_token_id, padding_side
    )


def frozen_names(model):
    return [n for n, p in model.named_parameters() if not p.requires_grad]


def test_forward_backward_grads_only_on_trainable(tiny_cfg, rows):
    torch.manual_seed(0)
    model = AffectGPT(tiny_cfg).train()
    out = model(**batch_for(model, rows))
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item())
    out.loss.backward()
    trainable = dict(model.named_trainable_parameters())
    assert trainable and all(
        n.split(".")[0] in {"video_qformer", "audio_qformer", "video_proj", "audio_proj"} for n in trainable
    )
    for name, p in trainable.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(float(p.grad.abs().sum()) > 0 for p in trainable.values())
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
    # frozen encoders stay in eval mode, the frozen LLM too (no LoRA, no checkpointing)
    assert not model.vision.training and not model.audio.training and not model.llm.training
    assert model.video_qformer.training
    assert len(model.trainable_parameters()) == len(trainable)
    assert any(n.startswith("llm.") for n in frozen_names(model))
    assert any(n.startswith("vision.") for n in frozen_names(model))


def test_labels_cover_only_answer_tokens(tiny_cfg, rows):
    model = AffectGPT(tiny_cfg)
    tok = model.tokenizer
    batch = batch_for(model, rows[:2])
    for i, row in enumerate(rows[:2]):
        labels, ids, slots = batch["labels"][i], batch["input_ids"][i], batch["slot_ids"][i]
        counted = labels != IGNORE
        answer = tok(row["description_en"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert labels[counted].tolist() == answer  # exactly the answer + eos
        assert torch.equal(ids[counted], labels[counted])
        assert not counted[slots != SLOT_TEXT].any()  # never a multimodal slot
        assert not counted[batch["attention_mask"][i] == 0].any()  # never padding
        assert (slots == SLOT_VIDEO).sum() == tiny_cfg.video_queries
        assert (slots == SLOT_AUDIO).sum() == tiny_cfg.audio_queries
        assert (slots == SLOT_FUSION).sum() == 0
    assert (batch["attention_mask"] == 0).any()  # rows differ in length: padding exists
    # a longer subtitle shifts the prompt but the counted tokens are still exactly the answer
    longer = dict(rows[0], subtitle_en="a much longer subtitle " * 3)
    other = batch_for(model, [longer])
    counted = other["labels"][0] != IGNORE
    assert other["input_ids"].shape[1] > int(batch["attention_mask"][0].sum())
    assert other["labels"][0][counted].tolist() == batch["labels"][0][batch["labels"][0] != IGNORE].tolist()


def test_loss_is_mean_over_answer_tokens_only(tiny_cfg, rows):
    torch.manual_seed(0)
    model = AffectGPT(tiny_cfg).eval()
    batch = batch_for(model, rows[:2])  # two rows of different length: right padding in row 0 or 1

    def manual(b):
        logits = model(**{**b, "labels": None}).logits[:, :-1]
        target = b["labels"][:, 1:]
        keep = target != IGNORE
        return torch.nn.functional.cross_entropy(logits[keep].float(), target[keep])

    base = model(**batch).loss
    assert torch.isclose(manual(batch), base, atol=1e-5)
    # another prompt token changes the loss (the prompt conditions the answer), still over the same tokens
    prompt_pos = torch.nonzero((batch["labels"][0] == IGNORE) & (batch["slot_ids"][0] == SLOT_TEXT)).flatten()
    changed = {**batch, "input_ids": batch["input_ids"].clone()}
    pos = int(prompt_pos[len(prompt_pos) // 2])
    changed["input_ids"][0, pos] = (changed["input_ids"][0, pos] + 7) % len(model.tokenizer)
    loss_changed = model(**changed).loss
    assert not torch.isclose(loss_changed, base)
    assert torch.isclose(manual(changed), loss_changed, atol=1e-5)
    # dropping one answer token from the labels changes the loss: answer tokens are what counts
    relabeled = {**batch, "labels": batch["labels"].clone()}
    answer_pos = torch.nonzero(batch["labels"][0] != IGNORE).flatten()
    relabeled["labels"][0, answer_pos[0]] = IGNORE
    assert not torch.isclose(model(**relabeled).loss, base)


def test_overfits_four_samples(tiny_cfg, rows):
    torch.manual_seed(0)
    model = AffectGPT(tiny_cfg.replace(qformer_dropout=0.0)).train()
    # The tiny LLM's 0.02-std init gives near-flat logits that no prompt can move; re-draw its (still
    # frozen) weights at a scale closer to a trained LLM's peaked outputs.
    with torch.no_grad():
        for p in model.llm.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    batch = batch_for(model, rows)
    # frozen encoders run once (as with the feature cache); each step trains on their cached outputs
    batch["video_embeds"] = model.encode_video(batch.pop("pixel_values"))
    batch["audio_embeds"] = model.encode_audio(batch.pop("audio_features"))
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert min(losses[-5:]) < min(losses[:5]), losses
    assert all(torch.equal(p, frozen_before[n]) for n, p in model.named_parameters() if not p.requires_grad)


def test_cached_features_give_same_loss(tiny_cfg, rows):
    torch.manual_seed(0)
    model = AffectGPT(tiny_cfg).eval()
    batch = batch_for(model, rows)
    live = model(**batch).loss
    video = model.encode_video(batch["pixel_values"])
    audio = model.encode_audio(batch["audio_features"])
    assert video.shape == (4, tiny_cfg.frames, 1, model.vision.hidden_size)
    assert audio.shape == (4, tiny_cfg.audio_clips, 1, model.audio.hidden_size)
    cached = {k: v for k, v in batch.items() if k not in ("pixel_values", "audio_features")}
    assert torch.equal(model(**cached, video_embeds=video, audio_embeds=audio).loss, live)
    # the same through per-row cached features (what a feature cache stores), on a model without encoders
    bare = AffectGPT(tiny_cfg, tokenizer=model.tokenizer, load_encoders=False).eval()
    bare.load_state_dict(model.state_dict(), strict=False)
    assert bare.vision is None and bare.audio is None
    enc = SampleEncoder(tiny_cfg, model.tokenizer)
    cached_rows = [
        dict(
            r,
            frames=None,
            audio=None,
            video_embeds=video[i].numpy(),
            frame_mask=batch["frame_mask"][i],
            audio_embeds=audio[i].numpy(),
            clip_mask=batch["clip_mask"][i],
        )
        for i, r in enumerate(rows)
    ]
    cbatch = collate([enc(r) for r in cached_rows], model.tokenizer.pad_token_id)
    assert "pixel_values" not in cbatch
    assert torch.allclose(bare(**cbatch).loss, live, atol=1e-6)
    with pytest.raises(RuntimeError, match="not loaded"):
        bare.encode_video(batch["pixel_values"])


@pytest.mark.parametrize("fusion", ["qformer", "attention"])
def test_prefusion_variants(tiny_cfg, rows, fusion):
    torch.manual_seed(0)
    cfg = tiny_cfg.replace(fusion=fusion)
    model = AffectGPT(cfg).train()
    batch = batch_for(model, rows[:2])
    assert int((batch["slot_ids"][0] == SLOT_FUSION).sum()) == cfg.fusion_queries
    out = model(**batch)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    fusion_params = {
        n: p for n, p in model.named_trainable_parameters() if n.startswith(("fusion.", "fusion_proj."))
    }
    assert fusion_params and all(
        p.grad is not None and float(p.grad.abs().sum()) > 0 for p in fusion_params.values()
    )
    if fusion == "attention":
        w = model.fusion.last_weights
        assert w.shape == (2, cfg.fusion_queries, cfg.video_queries + cfg.audio_queries)
        assert torch.allclose(w.sum(-1), torch.ones(2, cfg.fusion_queries))


def test_lora_adds_only_lora_params(tiny_cfg, rows):
    base = AffectGPT(tiny_cfg)
    lora = AffectGPT(tiny_cfg.replace(lora=True), tokenizer=base.tokenizer)
    base_names = {n for n, _ in base.named_trainable_parameters()}
    lora_names = {n for n, _ in lora.named_trainable_parameters()}
    extra = lora_names - base_names
    assert base_names <= lora_names and extra
    assert all(".lora_A." in n or ".lora_B." in n for n in extra)
    assert any("q_proj" in n for n in extra) and not any("mlp" in n for n in extra)
    lora.train()
    assert lora.llm.training and not lora.vision.training
    loss = lora(**batch_for(lora, rows[:2])).loss
    loss.backward()
    assert all(p.grad is not None for n, p in lora.named_trainable_parameters() if ".lora_A." in n)
    frozen_llm = [p for n, p in lora.named_parameters() if n.startswith("llm.") and "lora_" not in n]
    assert frozen_llm and all(not p.requires_grad and p.grad is None for p in frozen_llm)


def test_generate_batched_matches_single(tiny_cfg, rows):
    torch.manual_seed(0)
    model = AffectGPT(tiny_cfg).eval()
    left = batch_for(model, rows[:3], with_answer=False, padding_side="left")
    right = batch_for(model, rows[:3], with_answer=False, padding_side="right")
    kw = {"max_new_tokens": 6, "generation_kwargs": {"min_new_tokens": 6}}
    out_left = model.generate(**left, **kw)
    assert model.generate(**right, **kw) == out_left
    assert len(out_left) == 3 and all(isinstance(t, str) and t for t in out_left)
    single = [model.generate(**batch_for(model, [r], with_answer=False), **kw)[0] for r in rows[:3]]
    assert single == out_left
    with pytest.raises(ValueError, match="with_answer=False"):
        model.generate(**batch_for(model, rows[:1]))


def test_slot_mismatch_is_a_clear_error(tiny_cfg, rows):
    model = AffectGPT(tiny_cfg)
    other = tiny_cfg.replace(video_queries=tiny_cfg.video_queries + 1)
    enc = SampleEncoder(other, model.tokenizer, MediaProcessor(other))
    batch = collate([enc(rows[0])], model.tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="video slot positions"):
        model(**batch)
    with pytest.raises(TypeError, match="unexpected inputs"):
        model(**batch_for(model, rows[:1]), spectrogram=torch.zeros(1))
    batch = batch_for(model, rows[:1])
    batch.pop("audio_features")
    with pytest.raises(ValueError, match="neither audio_features nor cached audio_embeds"):
        model(**batch)


def test_bf16_gradient_checkpointing_and_lora_generate(tiny_cfg, rows):
    torch.manual_seed(0)
    cfg = tiny_cfg.replace(
        llm_dtype="bfloat16", encoder_dtype="bfloat16", gradient_checkpointing=True, lora=True
    )
    model = AffectGPT(cfg).train()
    assert model.llm.training and not model.vision.training
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for n, p in model.named_trainable_parameters() if "lora_" not in n)
    out = model(**batch_for(model, rows[:2]))
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert model.video_proj.weight.grad is not None and model.video_qformer.query_tokens.grad is not None
    model.eval()
    texts = model.generate(**batch_for(model, rows[:2], with_answer=False), max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_video_only_model(tiny_cfg, rows):
    cfg = tiny_cfg.replace(
        use_audio=False, prompt="Video: {video}\nSubtitle: {subtitle}\nHow does the person feel?"
    )
    model = AffectGPT(cfg).train()
    assert model.audio is None and model.audio_qformer is None
    batch = batch_for(model, rows[:2])
    assert "audio_features" not in batch and not (batch["slot_ids"] == SLOT_AUDIO).any()
    out = model(**batch)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert {n.split(".")[0] for n, _ in model.named_trainable_parameters()} == {"video_qformer", "video_proj"}


@pytest.mark.gpu
def test_cuda_bf16_forward_and_generate(tiny_cfg, rows):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.manual_seed(0)
    model = AffectGPT(tiny_cfg.replace(llm_dtype="bfloat16", encoder_dtype="bfloat16", fusion="qformer"))
    model = model.to("cuda").train()

    def on_gpu(batch):
        return {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in batch.items()}

    out = model(**on_gpu(batch_for(model, rows[:2])))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and model.video_proj.weight.grad.is_cuda
    texts = model.eval().generate(**on_gpu(batch_for(model, rows[:2], with_answer=False)), max_new_tokens=4)
    assert len(texts) == 2
