"""Model sources other than the ladder: pinned hub downloads (`source: hf`) and model directories on disk
(`source: local`). Each becomes a self-contained model directory with a `model.json` like a ladder checkpoint's.

Nothing heavy is imported here: the hub module imports huggingface_hub only when called (it reads HF_ENDPOINT,
HF_HOME and HF_HUB_OFFLINE at import), and the checks read weight headers without torch.
"""

from emergence.models.checks import (
    ChecksumError,
    ModelDirError,
    ModelSourceError,
    validate_model_dir,
    verify_model_files,
)
from emergence.models.hub import (
    HubUnreachableError,
    check_hub_reachable,
    checkpoint_step_of,
    fetch_hub_model,
    resolve_revision,
)
from emergence.models.local import link_local_model

__all__ = [
    "ChecksumError", "HubUnreachableError", "ModelDirError", "ModelSourceError", "check_hub_reachable",
    "checkpoint_step_of", "fetch_hub_model", "link_local_model", "resolve_revision",
    "validate_model_dir", "verify_model_files",
]
