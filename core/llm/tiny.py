"""Tiny random-weight checkpoints of the real model classes, for tests and the offline demo.

Each builder writes a folder that ``from_pretrained(path)`` loads exactly like a downloaded model
(``AutoTokenizer``, ``AutoModelForCausalLM``, ``AutoProcessor``, the Qwen2-Audio / Qwen2.5-VL classes),
and returns its path. Builders are idempotent: a folder holding the completion marker (written last)
is returned as is; weights come from a fixed seed, so two builds give the same checkpoint.
Random weights produce gibberish text: use these for plumbing, never for content.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = ".tiny_complete"
TOKENIZER_MARKER = ".tokenizer_complete"
SEED = 0
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|pad|>",
    "<|audio_bos|>",
    "<|AUDIO|>",
    "<|audio_eos|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# ChatML, as the Qwen2 / Qwen2-Audio / Qwen2.5-VL instruct checkpoints render it; content may be a
# string or a list of parts {"type": "text"|"image"|"video"|"audio"}.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' %}{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Whisper-style features: the processor pads audio to CHUNK_SECONDS, so the encoder must accept
# CHUNK_SECONDS * 100 frames / 2 (after its stride-2 convolution).
CHUNK_SECONDS = 4
# Frames are resized so their pixel count lies in [MIN_PIXELS, MAX_PIXELS] (multiples of 28 px).
MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112

_EN_EMOTIONS = [
    "happy",
    "sad",
    "angry",
    "worried",
    "surprised",
    "neutral",
    "frustrated",
    "anxious",
    "excited",
    "disappointed",
    "calm",
    "nervous",
    "relieved",
    "afraid",
    "disgusted",
    "confused",
]
_ZH_EMOTIONS = [
    "开心",
    "高兴",
    "悲伤",
    "难过",
    "生气",
    "愤怒",
    "担心",
    "惊讶",
    "中性",
    "沮丧",
    "焦虑",
    "兴奋",
    "失望",
    "平静",
    "紧张",
    "害怕",
    "厌恶",
    "困惑",
]
_EN_CLUES = [
    "the speaker frowns",
    "her voice trembles",
    "he raises his eyebrows",
    "the tone is flat",
    "she smiles slightly",
    "he speaks loudly and fast",
    "the corners of her mouth turn down",
    "his voice is low and slow",
    "she shakes her head",
    "the subtitle says thank you",
]
_ZH_CLUES = [
    "说话人皱着眉头",
    "她的声音颤抖",
    "他挑起眉毛",
    "语调平淡",
    "她微微一笑",
    "他说话又快又响",
    "她的嘴角下垂",
    "他的声音低沉缓慢",
    "她摇了摇头",
    "字幕内容是谢谢你",
]


def training_corpus() -> list[str]:
    """A few hundred deterministic English and Chinese sentences about emotions and their clues."""
    rng = random.Random(SEED)
    lines = []
    for emo, clue in itertools.product(_EN_EMOTIONS, _EN_CLUES):
        lines.append(f"In the video, {clue}, so the person may feel {emo}.")
    for emo, clue in itertools.product(_ZH_EMOTIONS, _ZH_CLUES):
        lines.append(f"在视频中，{clue}，因此这个人可能感到{emo}。")
    lines += [f"The emotional labels are: {', '.join(rng.sample(_EN_EMOTIONS, 3))}." for _ in range(40)]
    lines += [f"情绪标签为：{'，'.join(rng.sample(_ZH_EMOTIONS, 3))}。" for _ in range(40)]
    lines += [
        "Please summarize the clues and infer the emotional state of the character.",
        "Translate the following text into English.",
        "请将以下文本翻译成中文。",
        'Output format: ["label1", "label2"]; if none, output [].',
        "Audio 1: Video: Subtitle:",
    ]
    return lines


def build_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 1200) -> str:
    """Train a byte-level BPE tokenizer with the Qwen-family special tokens and a ChatML chat template.

    Saves it to out_dir and returns the path; ``AutoTokenizer.from_pretrained(path)`` loads it (as
    ``TokenizersBackend``). The small corpus stops short of ``vocab_size``: use ``len(tokenizer)``
    as a model's vocab size.
    """

    def make(out: Path) -> None:
        _make_tokenizer(vocab_size).save_pretrained(str(out))

    return build_folder(out_dir, "tokenizer (byte-level BPE)", make, marker=TOKENIZER_MARKER)


def _make_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(training_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        bos_token=None,
        model_max_length=4096,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _tokenizer_in(out: Path):
    """Write the tokenizer into ``out`` (a model folder under construction) and load it."""
    from transformers import AutoTokenizer

    _make_tokenizer(1200).save_pretrained(str(out))
    return AutoTokenizer.from_pretrained(str(out))


def build_folder(out_dir: str | Path, what: str, make: Callable[[Path], None], marker: str = MARKER) -> str:
    """``make`` into a private temporary folder beside ``out_dir``, the marker written last, then the
    folder renamed into place: an interrupted build leaves no ``out_dir``, a finished one is reused,
    and a reader never sees half a model. Seeded, so two builds give the same weights. Every tiny
    checkpoint (these LLMs and tokenizer, ``affect_model.model.tiny``'s encoders) is built this way."""
    import torch

    out = Path(out_dir)
    if (out / marker).is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        torch.manual_seed(SEED)
        make(tmp)
        (tmp / marker).write_text(what + "\n")
        _move_into_place(tmp, out, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("tiny %s written to %s", what, out)
    return str(out)


def _move_into_place(tmp: Path, out: Path, marker: str) -> None:
    if out.is_dir() and not (out / marker).is_file():
        shutil.rmtree(out)  # what a build interrupted before builds were atomic left behind
    try:
        os.rename(tmp, out)
    except OSError:
        if not (out / marker).is_file():  # not a build that finished first beside this one
            raise


def _text_kwargs(tok, hidden: int = 64, layers: int = 2, heads: int = 4) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )  # untied: a tied tiny model greedily repeats one token


def _save_model(model, out: Path, tok) -> None:
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(str(out))


def build_tiny_text_llm(out_dir: str | Path) -> str:
    """A 2-layer ``Qwen2ForCausalLM`` (hidden 64) plus its tokenizer in out_dir; returns the path."""

    def make(out: Path) -> None:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        tok = _tokenizer_in(out)
        _save_model(Qwen2ForCausalLM(Qwen2Config(**_text_kwargs(tok))), out, tok)

    return build_folder(out_dir, "text llm (Qwen2ForCausalLM)", make)


def build_tiny_audio_llm(out_dir: str | Path, chunk_seconds: int = CHUNK_SECONDS, heads: int = 4) -> str:
    """A tiny ``Qwen2AudioForConditionalGeneration`` plus ``Qwen2AudioProcessor`` in out_dir: audio in
    ``chunk_seconds`` Whisper chunks, ``heads`` attention heads over hidden 64 (text and encoder)."""

    def make(out: Path) -> None:
        from transformers import (
            Qwen2AudioConfig,
            Qwen2AudioEncoderConfig,
            Qwen2AudioForConditionalGeneration,
            Qwen2AudioProcessor,
            Qwen2Config,
            WhisperFeatureExtractor,
        )

        tok = _tokenizer_in(out)
        audio_cfg = Qwen2AudioEncoderConfig(
            num_mel_bins=80,
            encoder_layers=2,
            encoder_attention_heads=heads,
            encoder_ffn_dim=128,
            d_model=64,
            max_source_positions=chunk_seconds * 100 // 2,
        )
        text_cfg = Qwen2Config(**_text_kwargs(tok, heads=heads))
        cfg = Qwen2AudioConfig(
            audio_config=audio_cfg.to_dict(),
            text_config=text_cfg.to_dict(),
            audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
        )
        _save_model(Qwen2AudioForConditionalGeneration(cfg), out, tok)
        fe = WhisperFeatureExtractor(
            feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=chunk_seconds, n_fft=400
        )
        proc = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=CHAT_TEMPLATE)
        proc.save_pretrained(str(out))

    return build_folder(out_dir, "audio llm (Qwen2AudioForConditionalGeneration)", make)


def build_tiny_video_llm(out_dir: str | Path) -> str:
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor`` in out_dir.

    The processor (like every transformers 5 video processor) needs torchvision.
    """

    def make(out: Path) -> None:
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
        )

        tok = _tokenizer_in(out)
        ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        hidden, heads = 64, 4
        text = _text_kwargs(tok, hidden=hidden, heads=heads)
        # head_dim = hidden / heads = 16: the multimodal rope sections (t, h, w) sum to head_dim / 2
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            out_hidden_size=hidden,
            fullatt_block_indexes=[1],
        )
        cfg = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
        _save_model(Qwen2_5_VLForConditionalGeneration(cfg), out, tok)
        size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
        video = Qwen2VLVideoProcessor(size=size, cap_pixels_per_frame=True)
        proc = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(size=size),
            tokenizer=tok,
            video_processor=video,
            chat_template=CHAT_TEMPLATE,
        )
        proc.save_pretrained(str(out))

    return build_folder(out_dir, "video llm (Qwen2_5_VLForConditionalGeneration)", make)


def build_vllm_audio_llm(out_dir: str | Path) -> str:
    """The tiny audio LLM as vLLM's CPU backend takes it: head_dim 32 (the issue's trial saw 16
    refused) and 30-s Whisper chunks (vLLM's Qwen2-Audio processes audio in Whisper's 30-s windows)."""
    return build_tiny_audio_llm(out_dir, chunk_seconds=30, heads=2)


BUILDERS: dict[str, Callable[[str | Path], str]] = {
    "text": build_tiny_text_llm,
    "audio": build_tiny_audio_llm,
    "video": build_tiny_video_llm,
}
