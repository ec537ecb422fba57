"""kan_mlip's own model file: builder config + weights, as ``kan-deploy model.pth`` accepts."""

from pathlib import Path
from typing import Any, Dict

import torch
from hydra.utils import get_method

FORMAT = "kan_mlip.model.v1"


def build_model(config: Dict[str, Any]) -> torch.nn.Module:
    """Call the builder named by ``config['_target_']`` with the rest of the config."""
    from nequip.utils.global_state import set_global_state

    if "_target_" not in config:
        raise ValueError(f"model config needs a '_target_' (e.g. kan_mlip.models.KANAllegroModel); got keys {sorted(config)}")
    set_global_state()
    cfg = dict(config)
    return get_method(cfg.pop("_target_"))(**cfg)


def save_model(path, config: Dict[str, Any], model: torch.nn.Module) -> Path:
    """Write ``{format, config, state_dict}``; ``config`` is what ``build_model`` rebuilds the model from."""
    path = Path(path)
    torch.save({"format": FORMAT, "config": dict(config), "state_dict": model.state_dict()}, path)
    return path


def load_model_and_config(path):
    blob = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a kan_mlip model file (expected format {FORMAT!r})")
    model = build_model(blob["config"])
    model.load_state_dict(blob["state_dict"])
    return model, dict(blob["config"])


def load_model(path) -> torch.nn.Module:
    return load_model_and_config(path)[0]
