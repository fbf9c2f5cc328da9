"""The prompt template: audio, video, fusion and subtitle slots -> token ids, slot map and labels.

``ModelConfig.prompt`` holds the slots ``{video}``, ``{audio}``, ``{fusion}`` and ``{subtitle}``;
a line whose slot belongs to a switched-off input is dropped. The user turn is wrapped in the
tokenizer's chat template (``chat_format=auto`` and the tokenizer has one) or in a plain
``USER: ... ASSISTANT:`` frame (Vicuna). Multimodal slots become runs of placeholder ids marked in
``slot_ids`` (``SLOT_VIDEO`` ...); the model overwrites their embeddings with the projected query
tokens. ``labels`` are -100 everywhere except on the answer tokens and the closing end-of-sequence. The answer
is cut to ``max_answer_tokens`` (with the eos) and so that prompt + answer fit ``max_length``; an
encoded answer carries ``truncated`` (1 when it was cut), which the training loop counts.
"""

from __future__ import annotations

import re

from affect_model.model.config import ModelConfig

SLOT_TEXT, SLOT_VIDEO, SLOT_AUDIO, SLOT_FUSION = 0, 1, 2, 3
SLOT_IDS = {"video": SLOT_VIDEO, "audio": SLOT_AUDIO, "fusion": SLOT_FUSION}
IGNORE = -100
_MARK = "\u241e{}\u241e"  # a marker no tokenizer or chat template rewrites
_SPLIT = re.compile("\u241e(video|audio|fusion)\u241e")


class PromptBuilder:
    """Turns (subtitle, answer) into ``input_ids``, ``slot_ids`` and ``labels`` (Python lists)."""

    def __init__(self, cfg: ModelConfig, tokenizer) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.lengths = cfg.slot_lengths()
        self.use_chat = cfg.chat_format == "auto" and bool(getattr(tokenizer, "chat_template", None))
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {cfg.tokenizer_path}: has no eos token; the answer needs one to end")
        self.placeholder_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

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

    def encode(self, subtitle: str, answer: str | None = None) -> dict[str, list[int] | int]:
        """Token ids of the prompt (+ answer + eos when ``answer`` is given) with slot map and labels
        (+ ``truncated``: 0/1, with an answer)."""
        ids: list[int] = []
        slots: list[int] = []
        for i, part in enumerate(_SPLIT.split(self.render(subtitle))):
            if i % 2:  # a slot name
                n = self.lengths[part]
                ids += [self.placeholder_id] * n
                slots += [SLOT_IDS[part]] * n
            elif part:
                piece = self.tokenizer(part, add_special_tokens=False)["input_ids"]
                ids += piece
                slots += [SLOT_TEXT] * len(piece)
        labels = [IGNORE] * len(ids)
        if answer is not None:
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
