"""The encoder-family registry (``affect_model.model.families``): it covers every family the presets
name, it is the only place that tells families apart, and a lookup it cannot answer says where to add one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from affect_model.model import families, flops

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [*sorted((ROOT / "affect_model").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
REGISTRY = ROOT / "affect_model" / "model" / "families.py"
# family names and model types; "clip" is left out: it is also the value of model.audio_window
NAMES = {f.name for f in families.AUDIO_FAMILIES + families.VISION_FAMILIES} | {
    t for f in families.AUDIO_FAMILIES + families.VISION_FAMILIES for t in f.model_types
}
NAMES.discard("clip")


def _preset_models() -> list[tuple[str, str, str]]:
    """(preset, key, model) of every audio / vision model a preset names, comments' alternatives too."""
    out = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        for key in ("audio_model", "vision_model"):
            if key in model:
                out.append((path.stem, key, model[key]))
        for line in path.read_text().splitlines():  # e.g. "# or ...; Whisper: openai/whisper-large-v3"
            if line.strip().startswith("audio_model:") and "Whisper: " in line:
                out.append((path.stem, "audio_model", line.split("Whisper: ")[1].split()[0]))
    return out


@pytest.mark.parametrize(("preset", "key", "model"), _preset_models())
def test_every_family_the_presets_name_is_registered(preset, key, model):
    if model.startswith("${"):  # the demo's local tiny models: present once `emer models prepare` ran
        model = model.replace("${EMER_MODELS}", str(ROOT / ".cache" / "models"))
        if not Path(model).is_dir():
            pytest.skip(f"{model}: not prepared here")
    cfg = flops.model_config(model)
    if key == "audio_model":
        family = families.audio_family(cfg.model_type)
        assert family.width(cfg) > 0 and family.input_dims in (3, 4)
    else:
        family = families.vision_family((getattr(cfg, "vision_config", None) or cfg).model_type)
        assert family in families.VISION_FAMILIES


def _family_comparisons(path: Path) -> list[str]:
    """Comparisons (``==``, ``!=``, ``in``, ``startswith``) of a ``model_type`` or a family name."""

    def names_family(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr == "model_type":
            return True
        return isinstance(node, ast.Constant) and node.value in NAMES

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(map(names_family, [node.left, *node.comparators])):
            out.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "startswith" and names_family(node.func.value):
                out.append(f"{path.name}:{node.lineno}")
    return sorted(out, key=lambda hit: int(hit.rsplit(":", 1)[1]))


def test_only_the_registry_tells_encoder_families_apart(tmp_path):
    found = [hit for path in SCANNED if path != REGISTRY for hit in _family_comparisons(path)]
    assert found == [], "compare families through affect_model.model.families, not by name"
    planted = tmp_path / "planted.py"  # what the encoders, media and FLOPs code did before the registry
    planted.write_text(
        'kind = "whisper" if cfg.model_type == "whisper" else "waveform"\n'
        'if kind != "whisper":\n    pass\n'
        'tokens = 1 if cfg.model_type.startswith("clip") else 0\n'
        'window_is_clip = cfg.audio_window == "clip"\n'
    )
    assert _family_comparisons(planted) == ["planted.py:1", "planted.py:2", "planted.py:4"]


def test_an_unknown_model_type_names_the_registry():
    with pytest.raises(ValueError, match="no encoder family .* affect_model.model.families .*whisper"):
        families.audio_family("speecht5")
    with pytest.raises(ValueError, match="vision tower model_type 'dinov2'"):
        families.vision_family("dinov2")
