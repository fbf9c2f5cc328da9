"""Measured clues: the ``signal`` backend of the annotation's audio and video clue roles.

No language model runs here. ``AudioSignal`` measures a clip's 16 kHz audio with openSMILE's
eGeMAPSv02 functionals (``prosody``); ``VideoSignal`` counts faces in the sampled frames with MTCNN
and reads the main face's expression with the FER2013 mini-Xception (``faces``, ``expression``,
``xception``). Each returns the clue sentence (the ``audio_clue`` / ``video_clue`` column) and the
numbers behind it (``audio_features`` / ``face_expressions``, ``core.schema``).

Why here and not in ``core/llm``: the LLM layer is one interface for prompt -> text models shared
by annotation and evaluation; signal processing takes no prompt, returns numbers as well as text,
and is used only by the annotation's clue stages, so it lives in the annotation component and the
stages dispatch on ``backend: signal`` (``pipelines.stages.LLMStage.setup`` calls
``backend.reader``). ``core.llm`` only knows the name (so one role config holds either) and refuses
to build it. Where both clues were measured and found nothing, and there is no subtitle
(``backend.no_evidence``), the text steps write ``backend.NO_EVIDENCE`` and empty labels instead of
asking their LLM, which would invent an emotion. ``files`` locates the data files (norms, weights).
"""
