"""The transformers backend on tiny real checkpoints: batched generation per role, real media, errors."""

from __future__ import annotations

import pytest
from llm_fixtures import jpeg_frames, tiny_model, tone

from core.llm import LLMConfig, LLMRequest, create_backend

NEW = 6


def backend(role: str, **kw):
    cfg = LLMConfig(model=tiny_model(role), max_new_tokens=NEW, min_new_tokens=NEW, batch_size=2, **kw)
    return create_backend(cfg, role)


def assert_generated(results, n):
    assert len(results) == n
    for r in results:
        assert r.ok, r.error
        assert isinstance(r.text, str) and r.text != ""
        assert r.completion_tokens == NEW and r.prompt_tokens > 0


@pytest.fixture(scope="module")
def text_backend():
    return backend("text")


def test_text_batch(text_backend):
    prompts = ["Translate: I am fine.", "Translate: 我很好，谢谢你。" * 3, "List the emotions: happy"]
    results = text_backend.generate([LLMRequest(prompt=p) for p in prompts])
    assert_generated(results, 3)
    assert results[1].prompt_tokens > results[0].prompt_tokens  # order kept, lengths differ


def test_text_batched_equals_one_by_one(text_backend):
    reqs = [LLMRequest(prompt=p) for p in ("short", "a much longer prompt about a worried speaker " * 4)]
    batched = [r.text for r in text_backend.generate(reqs)]
    alone = [text_backend.generate([r])[0].text for r in reqs]
    assert batched == alone  # left padding and attention masks are right


def test_text_role_rejects_media_and_empty_prompt(text_backend):
    results = text_backend.generate(
        [LLMRequest(prompt="x", frames=jpeg_frames(1)), LLMRequest(prompt=" "), LLMRequest(prompt="fine")]
    )
    assert "takes no media" in results[0].error and results[0].text is None
    assert results[1].error == "empty prompt"
    assert results[2].ok


def test_audio_batch_with_real_audio():
    be = backend("audio")
    lengths = (1.0, 2.5, 3.9)
    reqs = [LLMRequest(prompt="Describe the voice.", audio=tone(s, seed=k)) for k, s in enumerate(lengths)]
    reqs.append(LLMRequest(prompt="no audio"))
    reqs.append(LLMRequest(prompt="wrong dtype", audio=tone(1.0).astype("float64")))
    results = be.generate(reqs)
    assert_generated(results[:3], 3)
    assert "needs request.audio" in results[3].error
    assert "float32" in results[4].error


def test_video_batch_with_real_frames():
    be = backend("video")
    reqs = [
        LLMRequest(prompt="Describe the face.", frames=jpeg_frames(8, seed=1), fps=2.0),
        LLMRequest(prompt="Describe the scene in detail.", frames=jpeg_frames(4, seed=2)),
        LLMRequest(prompt="Odd frame count.", frames=jpeg_frames(3, seed=3), fps=1.0),
    ]
    broken = LLMRequest(prompt="broken", frames=[jpeg_frames(1)[0][:100]])
    results = be.generate([*reqs, broken, LLMRequest(prompt="no frames")])
    assert_generated(results[:3], 3)
    assert results[3].error.startswith("bad input: ValueError: frame 0")
    assert "needs request.frames" in results[4].error


def test_a_failing_batch_is_retried_one_by_one(text_backend, monkeypatch):
    real = text_backend._run

    def flaky(chunk):
        if any("POISON" in inp["text"] for _, inp in chunk):
            raise RuntimeError("device-side failure")
        return real(chunk)

    monkeypatch.setattr(text_backend, "_run", flaky)
    results = text_backend.generate(
        [LLMRequest(prompt="ok one"), LLMRequest(prompt="POISON"), LLMRequest(prompt="ok two")]
    )
    assert results[0].ok and results[2].ok
    assert results[1].error == "generate failed: RuntimeError: device-side failure"


def test_missing_model_names_the_fix(tmp_path):
    with pytest.raises(OSError, match="tiny test models"):
        create_backend(LLMConfig(model=str(tmp_path / "absent")), "text")
    with pytest.raises(ValueError, match="not a transformers class"):
        create_backend(LLMConfig(model=tiny_model("text"), model_class="NoSuchModel"), "text")


KEY_CHECKING_TEMPLATE = (  # like some hub templates: an audio part is recognised by its key, not its type
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if 'audio' in c %}<|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in c %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_audio_with_a_key_checking_chat_template():
    be = backend("audio")
    be.processor.chat_template = KEY_CHECKING_TEMPLATE
    [res] = be.generate([LLMRequest(prompt="Describe the voice.", audio=tone(1.0))])
    assert res.ok, res.error


@pytest.mark.gpu
def test_text_on_gpu_in_bfloat16():
    be = backend("text", num_gpus=1, dtype="bfloat16")
    assert be.model.device.type == "cuda" and str(be.model.dtype) == "torch.bfloat16"
    assert_generated(be.generate([LLMRequest(prompt=p) for p in ("a", "bb bb", "ccc ccc ccc")]), 3)
