"""Tiny checkpoints: real classes, loadable with from_pretrained, idempotent and deterministic builds."""

from __future__ import annotations

import os

from llm_fixtures import tiny_model

from core.llm import tiny


def test_tokenizer_has_special_tokens_and_chat_template(tmp_path):
    from transformers import AutoTokenizer

    path = tiny.build_tiny_tokenizer(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(path)
    ids = [tok.convert_tokens_to_ids(t) for t in tiny.SPECIAL_TOKENS]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) and i < len(tok) for i in ids)
    for t in tiny.SPECIAL_TOKENS:  # each special token is one id, never split
        assert tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>"
    text = "在视频中，她微微一笑 and looks happy."
    assert tok.decode(tok(text)["input_ids"]) == text
    messages = [{"role": "user", "content": "hi"}]
    chat = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_builders_are_idempotent_and_deterministic(tmp_path):
    a = tiny.build_tiny_text_llm(tmp_path / "a")
    weights = os.path.join(a, "model.safetensors")
    stamp = os.stat(weights).st_mtime_ns
    assert tiny.build_tiny_text_llm(tmp_path / "a") == a
    assert os.stat(weights).st_mtime_ns == stamp  # skipped, not rewritten
    b = tiny.build_tiny_text_llm(tmp_path / "b")
    with open(weights, "rb") as fa, open(os.path.join(b, "model.safetensors"), "rb") as fb:
        assert fa.read() == fb.read()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary folders left


def test_text_checkpoint_loads_as_real_classes():
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = tiny_model("text")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert AutoConfig.from_pretrained(path).vocab_size == len(tok)


def test_audio_checkpoint_loads_as_real_classes():
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    path = tiny_model("audio")
    model = Qwen2AudioForConditionalGeneration.from_pretrained(path)
    proc = AutoProcessor.from_pretrained(path)
    assert type(proc).__name__ == "Qwen2AudioProcessor"
    assert model.config.audio_config.max_source_positions == tiny.CHUNK_SECONDS * 100 // 2
    assert proc.feature_extractor.chunk_length == tiny.CHUNK_SECONDS
    assert model.config.audio_token_id == proc.tokenizer.convert_tokens_to_ids("<|AUDIO|>")


def test_video_checkpoint_loads_as_real_classes():
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    path = tiny_model("video")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    proc = AutoProcessor.from_pretrained(path)
    assert type(proc).__name__ == "Qwen2_5_VLProcessor"
    assert type(proc.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert model.config.video_token_id == proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
