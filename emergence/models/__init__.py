"""Models as the pipeline keeps them: model directories (`modeldir`: HF files + `model.json`), written by the
ladder's trainer or fetched from sources other than the ladder: pinned hub downloads (`hub`, `source: hf`) and
model directories on disk (`local`, `source: local`), checked by `checks`; `families` turns a configured family
into runs.

Nothing is imported here, so that a module using one of these (the ladder's trainer writes model directories)
depends on that module only; the hub module imports huggingface_hub only when called (it reads HF_ENDPOINT,
HF_HOME and HF_HUB_OFFLINE at import), and the checks read weight headers without torch.
"""
