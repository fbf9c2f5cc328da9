"""From raw videos to clips: the MER2024 data preparation step before annotation (issue #27).

A long source video (a movie, a TV episode) is segmented by its subtitle timestamps (``segment``)
or, without subtitles, by Silero VAD plus speaker merging (``vad``, ``speakers``); segments are
filtered by duration and by faces (``faces``: one face in most sampled frames, the same person);
the kept ones are cut with ffmpeg (``cut``) and transcribed by the ``asr`` role when they have no
subtitle. ``job`` is the Ray Data job behind ``emer clips``: one source video a row, many clips out,
resumable per video; its outputs (``clips/``, ``subtitles.csv``) feed ``emer annotate`` unchanged.
``noise`` builds MER-NOISE (additive noise and blur) from clips.
"""
