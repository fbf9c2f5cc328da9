"""A tiny random-weight Whisper (``WhisperForConditionalGeneration`` + ``WhisperProcessor``) for the
``asr`` role in tests and the offline demo; it transcribes gibberish, never content.

Built like the other tiny checkpoints (``core.llm.tiny.build_folder``: seeded, temp folder, marker
last, renamed into place). The tokenizer is a byte-level BPE over the tiny corpus with Whisper's
special tokens; the generation config carries the language / task / no-timestamps ids Whisper's
``generate`` looks up, so the folder loads and runs exactly like a real checkpoint.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from core.llm.tiny import build_folder, training_corpus

SPECIAL = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|zh|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)


def _tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import WhisperTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(training_corpus(), vocab_size=600, special_tokens=list(SPECIAL))
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        vocab = json.loads(Path(tmp, "vocab.json").read_text())
        lines = Path(tmp, "merges.txt").read_text().splitlines()[1:]
    merges = [tuple(line.split()) for line in lines if line.strip()]
    tok = WhisperTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL[1:])})
    return tok


def build_tiny_whisper(out_dir: str | Path) -> str:
    """A 2+2-layer Whisper (d_model 32) and its processor in ``out_dir``; returns the path."""

    def make(out: Path) -> None:
        from transformers import (
            WhisperConfig,
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
            WhisperProcessor,
        )

        tok = _tokenizer()
        ids = dict(zip(SPECIAL, tok.convert_tokens_to_ids(list(SPECIAL))))
        end = ids["<|endoftext|>"]
        cfg = WhisperConfig(
            vocab_size=len(tok),
            num_mel_bins=80,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            d_model=32,
            max_target_positions=64,
            pad_token_id=end,
            bos_token_id=end,
            eos_token_id=end,
            decoder_start_token_id=ids["<|startoftranscript|>"],
            begin_suppress_tokens=None,
            suppress_tokens=None,
        )
        model = WhisperForConditionalGeneration(cfg)
        gen = model.generation_config
        gen.no_timestamps_token_id = ids["<|notimestamps|>"]
        gen.lang_to_id = {t: ids[t] for t in ("<|en|>", "<|zh|>")}
        gen.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
        gen.is_multilingual, gen.forced_decoder_ids = True, None
        model.save_pretrained(str(out))
        features = WhisperFeatureExtractor(feature_size=80)
        WhisperProcessor(feature_extractor=features, tokenizer=tok).save_pretrained(str(out))

    return build_folder(out_dir, "asr (WhisperForConditionalGeneration)", make)
