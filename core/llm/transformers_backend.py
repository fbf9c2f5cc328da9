"""In-process Hugging Face backend: one model loaded per actor, batched ``generate``.

Roles and default classes: text -> ``AutoModelForCausalLM`` + tokenizer (Qwen2 / Llama-3 instruct),
audio -> ``Qwen2AudioForConditionalGeneration`` + its processor, video ->
``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor`` (frames decoded from JPEG bytes and
passed to the real processor). ``LLMConfig.model_class`` names another transformers class.
Prompts go through the checkpoint's chat template. A batch that fails is retried request by request,
so the error lands on the request that caused it. Metrics: each generate batch is one
``LLMBackend.record`` (requests, tokens, errors, the batch's seconds as latency).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence

from core.llm.base import LLMBackend, LLMConfig, LLMRequest, LLMResult, conversation
from core.llm.prefix_cache import PrefixCache
from core.schema import SAMPLE_RATE

logger = logging.getLogger(__name__)

DEFAULT_CLASSES = {
    "text": "AutoModelForCausalLM",
    "audio": "Qwen2AudioForConditionalGeneration",
    "video": "Qwen2_5_VLForConditionalGeneration",
}


def pick_device(num_gpus: float) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and num_gpus > 0 else "cpu"


class TransformersBackend(LLMBackend):
    """Loads ``cfg.model`` (local folder or hub id) once; ``generate`` runs ``cfg.batch_size`` at a time."""

    def __init__(self, cfg: LLMConfig, kind: str) -> None:
        super().__init__(cfg, kind)
        import torch
        import transformers

        if kind not in DEFAULT_CLASSES:
            raise ValueError(
                f"the transformers backend has no {kind} model class; use backend vllm or openai"
            )
        name = cfg.model_class or DEFAULT_CLASSES[kind]
        cls = getattr(transformers, name, None)
        if cls is None:
            raise ValueError(
                f"model_class = {name!r}: not a transformers class; use e.g. {DEFAULT_CLASSES[kind]}"
            )
        self.device = pick_device(cfg.num_gpus)
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        start = time.perf_counter()
        kwargs = {"dtype": dtype}
        rev = {"revision": cfg.revision} if cfg.revision else {}
        kwargs.update(rev)
        if self.device == "cuda" and cfg.num_gpus > 1:
            kwargs["device_map"] = "auto"
        try:
            self.model = cls.from_pretrained(cfg.model, **kwargs)
            if kind == "text":
                self.processor = None
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                    cfg.model, padding_side="left", **rev
                )
            else:
                self.processor = transformers.AutoProcessor.from_pretrained(cfg.model, **rev)
                self.tokenizer = self.processor.tokenizer
                self.tokenizer.padding_side = "left"
        except OSError as err:
            raise OSError(
                f"cannot load {kind} model {cfg.model!r} with {name}: {err}. Set model to a local "
                "folder (or a hub id when online); tiny test models: core.llm.tiny"
            ) from err
        if "device_map" not in kwargs:
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.prefix = None  # the text steps' shared prompt heads (core.llm.prefix_cache)
        if kind == "text" and cfg.reuse_prefix:
            self.prefix = PrefixCache(self.model, self.tokenizer.pad_token_id)
        logger.info(
            "loaded %s model %s (%s) on %s in %.1f s",
            kind,
            cfg.model,
            name,
            self.device,
            time.perf_counter() - start,
        )

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results: list[LLMResult | None] = [None] * len(requests)
        ready: list[tuple[int, dict]] = []
        for i, req in enumerate(requests):
            problem = self.check_request(req)
            inputs = None
            if problem is None:
                try:
                    inputs = self._prepare(req)
                except Exception as err:  # noqa: BLE001 - one bad input becomes one error row
                    problem = f"bad input: {type(err).__name__}: {err}"
            if problem is not None:
                results[i] = LLMResult(error=problem)
            else:
                ready.append((i, inputs))
        self.record([r for r in results if r is not None])  # requests refused before generate
        bs = self.cfg.batch_size
        for start in range(0, len(ready), bs):
            chunk = ready[start : start + bs]
            began = time.perf_counter()
            answers = self._run_isolating(chunk)
            self.record(answers, time.perf_counter() - began)  # one generate batch
            for (i, _), res in zip(chunk, answers):
                results[i] = res
        return [r if r is not None else LLMResult(error="internal: no result") for r in results]

    # ------------------------------------------------------------------ preparation

    def _prepare(self, req: LLMRequest) -> dict:
        """Rendered chat text plus decoded media for one request."""
        text = {"type": "text", "text": req.prompt}
        if self.kind == "text":
            return {"text": self._chat(req, [text])}
        # media parts carry a placeholder value too: some hub templates test for the key, not the type
        if self.kind == "audio":
            return {
                "text": self._chat(req, [{"type": "audio", "audio": "clip.wav"}, text]),
                "audio": req.audio,
            }
        frames = [_decode_jpeg(b, k) for k, b in enumerate(req.frames or [])]
        meta = {"total_num_frames": len(frames), "frames_indices": list(range(len(frames)))}
        if req.fps:
            meta["fps"] = float(req.fps)
        chat = self._chat(req, [{"type": "video", "video": "clip.mp4"}, text])
        return {"text": chat, "video": frames, "meta": meta}

    def _chat(self, req: LLMRequest, content: list[dict]) -> str:
        owner = self.processor if self.processor is not None else self.tokenizer
        if getattr(owner, "chat_template", None) is None:
            raise ValueError(f"{self.cfg.model} has no chat template; use an instruct checkpoint")
        messages = conversation(req, content[0]["text"] if self.kind == "text" else content)
        if self.kind != "text":  # multimodal processors' templates take a list of parts in every turn
            messages = [
                {**m, "content": [{"type": "text", "text": m["content"]}]}
                if isinstance(m["content"], str)
                else m
                for m in messages
            ]
        return owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, chunk: list[tuple[int, dict]]):
        """The chunk's model inputs, on the model's device."""
        texts = [inp["text"] for _, inp in chunk]
        if self.kind == "text":  # tokenized once: the shared head's inputs, else the padded batch
            rows = [self.tokenizer(t)["input_ids"] for t in texts]
            shared = self.prefix.inputs(rows) if self.prefix is not None else None
            padded = None if shared else self.tokenizer.pad({"input_ids": rows}, return_tensors="pt")
            return shared or padded.to(self.model.device)
        if self.kind == "audio":
            return self.processor(
                text=texts,
                audio=[inp["audio"] for _, inp in chunk],
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
                padding=True,
            ).to(self.model.device)
        return self.processor(
            text=texts,
            videos=[inp["video"] for _, inp in chunk],
            video_metadata=[inp["meta"] for _, inp in chunk],
            do_sample_frames=False,
            return_tensors="pt",
            padding=True,
        ).to(self.model.device)

    # ------------------------------------------------------------------ generation

    def _run_isolating(self, chunk: list[tuple[int, dict]]) -> list[LLMResult]:
        try:
            return self._run(chunk)
        except Exception as err:  # noqa: BLE001
            if len(chunk) == 1:
                logger.warning("%s generate failed: %s: %s", self.kind, type(err).__name__, err)
                return [LLMResult(error=f"generate failed: {type(err).__name__}: {err}")]
            logger.warning("%s batch of %d failed (%s); retrying one by one", self.kind, len(chunk), err)
            return [res for item in chunk for res in self._run_isolating([item])]

    def _run(self, chunk: list[tuple[int, dict]]) -> list[LLMResult]:
        import torch

        enc = self._encode(chunk)
        gen = {"max_new_tokens": self.cfg.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if self.cfg.min_new_tokens:
            gen["min_new_tokens"] = self.cfg.min_new_tokens
        if self.cfg.temperature > 0:
            gen.update(do_sample=True, temperature=self.cfg.temperature)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen)
        width = enc["input_ids"].shape[1]
        new = out[:, width:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        stop = self._stop_ids()
        return [
            LLMResult(text=t.strip(), prompt_tokens=int(p), completion_tokens=_count_new(row, stop))
            for t, p, row in zip(texts, prompt_tokens, new.tolist())
        ]

    def _stop_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids | {self.tokenizer.pad_token_id}


def _count_new(row: list[int], stop: set[int]) -> int:
    """Generated tokens up to and including the first stop token (padding after it is not output)."""
    for k, tok in enumerate(row):
        if tok in stop:
            return k + 1
    return len(row)


def _decode_jpeg(data: bytes, index: int):
    from PIL import Image

    if not isinstance(data, (bytes, bytearray, memoryview)) or not data:
        raise ValueError(f"frame {index}: expected JPEG bytes, got {type(data).__name__}")
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            return img.convert("RGB")
    except Exception as err:  # noqa: BLE001 - PIL raises several types for broken images
        raise ValueError(f"frame {index}: not a decodable image ({type(err).__name__}: {err})") from err
