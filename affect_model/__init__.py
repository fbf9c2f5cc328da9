"""emer: affect_model — the AffectGPT model and its training.

Model code (no Ray, no DeepSpeed): ``config`` (``ModelConfig`` + presets), ``encoders`` (frozen vision /
audio towers), ``qformer`` (per-modality Q-Formers, pre-fusion), ``prompt`` (template, slots, labels),
``model`` (``AffectGPT``), ``media`` / ``data`` (preprocessing, EMER-Coarse / EMER-Fine, batches),
``checkpoint`` (trainable weights + config), ``tiny`` (tiny random-weight encoders for tests).
Training, feature cache and inference on Ray Train + DeepSpeed live in the ``train*`` modules.
"""
