"""The prompt template: audio, video, fusion and subtitle slots -> token ids, slot map and labels.

``ModelConfig.prompt`` holds the slots ``{video}``, ``{audio}``, ``{fusion}`` and ``{subtitle}``;
a line whose slot belongs to a switched-off input is dropped. The user turn is wrapped in the
tokenizer's chat template (``chat_format=auto`` and the tokenizer has one) or in a plain
``USER: ... ASSISTANT:`` frame (Vicuna). Multimodal slots become runs of placeholder ids marked in
``slot_ids`` (``SLOT_VIDEO`` ...); the model overwrites their embeddings with the projected query
tokens. ``labels`` are -100 everywhere except on the answer tokens and the closing end-of-sequence. The answer
is cut to ``max_answer_tokens`` (with the eos) and so that prompt + answer fit ``max_length``; an
encoded answer carries ``truncated`` (1 when it was cut), which the training loop counts.

``chat_format = "affectgpt"`` renders the official code's literal template instead (``###Human: ... ###
Assistant: ``, the question of the sample's target inside, no chat template), its slots as the added
special tokens ``<MultiHere>`` / ``<AudioHere>`` / ``<FrameHere>``, the ids preceded by the bos token
(``<|im_start|>`` for Qwen, as official) and the answer followed by ``###`` and the eos.
"""

from __future__ import annotations

import re

from affect_model.model.config import ModelConfig
from core.llm.labels import format_ov_answer as ov_answer
from core.llm.labels import parse_ov_answer

__all__ = ["PromptBuilder", "add_prompt_tokens", "ov_answer", "parse_ov_answer"]

SLOT_TEXT, SLOT_VIDEO, SLOT_AUDIO, SLOT_FUSION = 0, 1, 2, 3
SLOT_IDS = {"video": SLOT_VIDEO, "audio": SLOT_AUDIO, "fusion": SLOT_FUSION}
IGNORE = -100
_MARK = "\u241e{}\u241e"  # a marker no tokenizer or chat template rewrites
_SPLIT = re.compile("\u241e(video|audio|fusion)\u241e")

# ---- the official AffectGPT prompt (MERTools my_affectgpt: config.py, base_dataset.py)
PROMPT_TOKENS = ("<ImageHere>", "<AudioHere>", "<FrameHere>", "<FaceHere>", "<MultiHere>")
SLOT_TOKENS = {"video": "<FrameHere>", "audio": "<AudioHere>", "fusion": "<MultiHere>"}
QUESTIONS = {
    "description": "Please infer the person's emotional state and provide your reasoning process.",
    "ovlabel": "Please recognize all possible emotional states of the character.",
}
STOP = "###"
_SENTENCES = (  # (slot that must be on, sentence); {fusion}/{audio}/{video} are the slot markers
    ("fusion", "The audio and video merged info is: <Multi>{fusion}</Multi>. "),
    ("audio", "The audio content is as follows: <Audio>{audio}</Audio>. "),
    ("video", "Meanwhile, we uniformly sample raw frames from the video: <Video>{video}</Video>. "),
    ("subtitle", "The subtitle of this video is: <Subtitle>{subtitle}</Subtitle>. "),
)


def add_prompt_tokens(tokenizer) -> None:
    """The official tokenizer changes: the five added special tokens, and ``<|im_start|>`` as the bos
    of a Qwen tokenizer that has none."""
    tokenizer.add_tokens(list(PROMPT_TOKENS), special_tokens=True)
    if tokenizer.bos_token is None and "<|im_start|>" in tokenizer.get_vocab():
        tokenizer.bos_token = "<|im_start|>"


class PromptBuilder:
    """Turns (subtitle, answer) into ``input_ids``, ``slot_ids`` and ``labels`` (Python lists)."""

    def __init__(self, cfg: ModelConfig, tokenizer) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.lengths = cfg.slot_lengths()
        self.official = cfg.chat_format == "affectgpt"
        self.use_chat = cfg.chat_format == "auto" and bool(getattr(tokenizer, "chat_template", None))
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {cfg.tokenizer_path}: has no eos token; the answer needs one to end")
        self.placeholder_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.slot_token_ids = {}
        if self.official:
            vocab = tokenizer.get_vocab()
            lost = [t for t in SLOT_TOKENS.values() if t not in vocab]
            if lost:
                raise ValueError(
                    f"tokenizer {cfg.tokenizer_path}: lacks {lost}; load it with "
                    "affect_model.model.affectgpt.load_tokenizer (adds the official prompt tokens)"
                )
            self.slot_token_ids = {slot: vocab[t] for slot, t in SLOT_TOKENS.items()}

    def official_text(self, subtitle: str, question: str) -> str:
        """The official template with slot markers (``render_official`` expands them)."""
        on = {slot: self.lengths[slot] > 0 for slot in ("video", "audio", "fusion")}
        on["subtitle"] = self.cfg.use_subtitle
        body = "".join(text for slot, text in _SENTENCES if on[slot])
        for slot in ("video", "audio", "fusion"):
            body = body.replace("{" + slot + "}", _MARK.format(slot))
        body = body.replace("{subtitle}", self._clip_subtitle(subtitle))
        return (
            f"###Human: {body}Now, please answer my question based on all the provided information. "
            f"{question} ###Assistant: "
        )

    def render_official(self, subtitle: str, question: str) -> str:
        """The official prompt text exactly as the official code tokenizes it (bos not included)."""
        text = self.official_text(subtitle, question)
        for slot, token in SLOT_TOKENS.items():
            text = text.replace(_MARK.format(slot), token * self.lengths[slot])
        return text

    def user_text(self, subtitle: str) -> str:
        """The user turn with slot markers in place of the multimodal inputs."""
        on = {
            "video": self.lengths["video"] > 0,
            "audio": self.lengths["audio"] > 0,
            "fusion": self.lengths["fusion"] > 0,
            "subtitle": self.cfg.use_subtitle,
        }
        lines = [
            line for line in self.cfg.prompt.split("\n") if all(on[s] for s in on if "{" + s + "}" in line)
        ]
        text = "\n".join(lines)
        for slot in ("video", "audio", "fusion"):
            text = text.replace("{" + slot + "}", _MARK.format(slot))
        return text.replace("{subtitle}", self._clip_subtitle(subtitle))

    def _clip_subtitle(self, subtitle: str) -> str:
        subtitle = " ".join(str(subtitle or "").replace("\u241e", " ").split())
        ids = self.tokenizer(subtitle, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.cfg.max_subtitle_tokens:
            return subtitle
        return self.tokenizer.decode(ids[: self.cfg.max_subtitle_tokens]).strip()

    def render(self, subtitle: str) -> str:
        """The whole prompt (system + user turn + start of the assistant turn) with slot markers."""
        user = self.user_text(subtitle)
        if self.use_chat:
            messages = [
                {"role": "system", "content": self.cfg.system_prompt},
                {"role": "user", "content": user},
            ]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = self.tokenizer.bos_token or ""
        return f"{bos}{self.cfg.system_prompt}\nUSER: {user}\nASSISTANT:"

    def encode(
        self, subtitle: str, answer: str | None = None, question: str = "description"
    ) -> dict[str, list[int] | int]:
        """Token ids of the prompt (+ answer + eos when ``answer`` is given) with slot map and labels
        (+ ``truncated``: 0/1, with an answer). ``question``: which official question the prompt asks
        (``description`` / ``ovlabel``; only the official template asks one)."""
        ids: list[int] = []
        slots: list[int] = []
        if self.official:
            text = self.official_text(subtitle, QUESTIONS[question])
            bos = self.tokenizer.bos_token_id
            ids, slots = ([bos], [SLOT_TEXT]) if bos is not None else ([], [])
        else:
            text = self.render(subtitle)
        for i, part in enumerate(_SPLIT.split(text)):
            if i % 2:  # a slot name
                n = self.lengths[part]
                ids += [self.slot_token_ids.get(part, self.placeholder_id)] * n
                slots += [SLOT_IDS[part]] * n
            elif part:
                piece = self.tokenizer(part, add_special_tokens=False)["input_ids"]
                ids += piece
                slots += [SLOT_TEXT] * len(piece)
        labels = [IGNORE] * len(ids)
        if answer is not None:
            if self.official:
                text = answer.strip() + STOP
            else:
                text = answer.strip() if self.use_chat else " " + answer.strip()
            answer_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            target = answer_ids[: self.answer_budget(len(ids))]
            truncated = int(len(target) < len(answer_ids))
            target.append(self.tokenizer.eos_token_id)
            ids += target
            slots += [SLOT_TEXT] * len(target)
            labels += target
            return {"input_ids": ids, "slot_ids": slots, "labels": labels, "truncated": truncated}
        return {"input_ids": ids, "slot_ids": slots, "labels": labels}

    def answer_budget(self, prompt_length: int) -> int:
        """Answer tokens that fit before the closing eos: ``max_answer_tokens - 1``, and within
        ``max_length`` for the prompt + answer + eos (at least 0: the eos alone)."""
        budget = self.cfg.max_answer_tokens - 1
        if self.cfg.max_length:
            budget = min(budget, self.cfg.max_length - prompt_length - 1)
        return max(0, budget)
