"""Tiny random-weight encoder checkpoints (CLIP / SigLIP vision, Whisper encoder, HuBERT) for tests.

Each builder writes a folder that ``affect_model.model.encoders`` loads exactly like a downloaded model
(weights + config + the matching image processor / feature extractor) and returns its path. Builders
are idempotent, atomic (built in a temporary folder beside the target, completion marker last, then
renamed into place: a reader never sees half a model) and seeded, so two builds give the same weights:
``core.llm.tiny.build_folder`` builds them, as it builds the tiny LLMs and tokenizer.
Random weights: plumbing only.
"""

from __future__ import annotations

from pathlib import Path

from core.llm.tiny import build_folder, build_tiny_text_llm

IMAGE_SIZE = 32
CLIP_SECONDS = 2  # the tiny Whisper encoder takes exactly one 2-second clip (100 positions)
MEL_BINS = 16


def _vision_kwargs() -> dict:
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
    )


def build_tiny_clip_vision(out_dir: str | Path) -> str:
    """A 2-layer ``CLIPVisionModel`` (hidden 32, 32 px, patch 8) with a ``CLIPImageProcessor``."""

    def make(out: Path) -> None:
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        CLIPVisionModel(CLIPVisionConfig(**_vision_kwargs())).save_pretrained(str(out))
        CLIPImageProcessor(
            size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        ).save_pretrained(str(out))

    return build_folder(out_dir, "CLIPVisionModel", make)


def build_tiny_clip_full(out_dir: str | Path) -> str:
    """A tiny full ``CLIPModel`` (text + vision), laid out like ``openai/clip-vit-*`` on the Hub."""

    def make(out: Path) -> None:
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        text = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=99,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        CLIPModel(
            CLIPConfig(text_config=text, vision_config=_vision_kwargs(), projection_dim=16)
        ).save_pretrained(str(out))
        CLIPImageProcessor(
            size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        ).save_pretrained(str(out))

    return build_folder(out_dir, "CLIPModel", make)


def build_tiny_siglip_vision(out_dir: str | Path) -> str:
    """A 2-layer ``SiglipVisionModel`` (hidden 32, 32 px, patch 8) with a ``SiglipImageProcessor``."""

    def make(out: Path) -> None:
        from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

        SiglipVisionModel(SiglipVisionConfig(**_vision_kwargs())).save_pretrained(str(out))
        SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(str(out))

    return build_folder(out_dir, "SiglipVisionModel", make)


def build_tiny_whisper_encoder(out_dir: str | Path, window_seconds: int = CLIP_SECONDS) -> str:
    """A 2-layer ``WhisperEncoder`` (d_model 32, 16 mel bins) over a ``window_seconds`` window (2 s by
    default: exactly one clip), with its feature extractor."""

    def make(out: Path) -> None:
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = WhisperConfig(
            num_mel_bins=MEL_BINS,
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            max_source_positions=window_seconds * 50,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=3,
        )
        WhisperEncoder(cfg).save_pretrained(str(out))
        WhisperFeatureExtractor(
            feature_size=MEL_BINS,
            sampling_rate=16000,
            hop_length=160,
            chunk_length=window_seconds,
            n_fft=400,
        ).save_pretrained(str(out))

    return build_folder(out_dir, "WhisperEncoder", make)


def build_tiny_hubert(out_dir: str | Path) -> str:
    """A 5-layer ``HubertModel`` (hidden 32, 7 narrow conv layers: 320x downsampling) on raw 16 kHz audio
    (5 layers, so the mean of the last four hidden states differs from both the last and all of them)."""

    def make(out: Path) -> None:
        from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

        cfg = HubertConfig(
            hidden_size=32,
            num_hidden_layers=5,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            do_stable_layer_norm=True,
            feat_extract_norm="layer",
            vocab_size=32,
        )
        HubertModel(cfg).save_pretrained(str(out))
        Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=16000,
            padding_value=0.0,
            do_normalize=True,
            return_attention_mask=True,
        ).save_pretrained(str(out))

    return build_folder(out_dir, "HubertModel", make)


def build_tiny_models(
    root: str | Path, audio: str = "whisper", vision: str = "clip-vision"
) -> dict[str, str]:
    """Build (once) the tiny vision tower (``clip-vision``, or ``clip-full``: a full CLIP with its image
    projection), audio encoder (``whisper`` or ``hubert``) and LLM + tokenizer under ``root``; returns
    ``{"vision": path, "audio": path, "llm": path}``."""

    root = Path(root)
    audio_builders = {"whisper": build_tiny_whisper_encoder, "hubert": build_tiny_hubert}
    vision_builders = {"clip-vision": build_tiny_clip_vision, "clip-full": build_tiny_clip_full}
    if audio not in audio_builders:
        raise ValueError(f"tiny audio encoder {audio!r}: must be one of {', '.join(audio_builders)}")
    if vision not in vision_builders:
        raise ValueError(f"tiny vision tower {vision!r}: must be one of {', '.join(vision_builders)}")
    return {
        "vision": vision_builders[vision](root / vision),
        "audio": audio_builders[audio](root / f"{audio}-encoder"),
        "llm": build_tiny_text_llm(root / "qwen2-llm"),
    }
