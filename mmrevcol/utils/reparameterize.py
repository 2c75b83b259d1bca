"""Re-parameterisation for deployment: ``switch_to_deploy()`` on every module that has one, checked and saved.

Any backbone (or other module) that re-parameterises exposes ``switch_to_deploy()`` (the mmpretrain / RepVGG
convention, :class:`mmrevcol.models.backbones.base.BaseBackbone`): RevCol folds its layer scales and stores conv
weights channels-last, SLaK folds BN and merges its K×s, s×K and s×s kernels into one K×K kernel. The functions here
do it for a whole model: load through the strict policy, switch, compare the outputs before and after on a random
input, save atomically, and say how to load the result (:func:`loading_note`).

Tools: ``tools/deploy/reparameterize.py CONFIG CKPT OUT`` (any config) and ``tools/deploy_slak.py SRC DST``
(a SLaK checkpoint alone, the architecture read from its weights).
"""
import inspect
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .errors import ExpectedError

__all__ = ['ReparameterizationError', 'deployable_modules', 'switch_to_deploy', 'max_relative_error',
           'reparameterize', 'loading_note', 'deployed_checkpoint', 'slak_from_checkpoint']


class ReparameterizationError(ExpectedError):
    """Nothing to re-parameterise, or the re-parameterised model computes something else."""


def deployable_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of the outermost modules with a ``switch_to_deploy`` method (a backbone's switch handles
    its own children), in module order; ``''`` is the model itself."""
    found: List[Tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name == p or name.startswith(p + '.') or not p for p, _ in found):
            continue
        if callable(getattr(module, 'switch_to_deploy', None)):
            found.append((name, module))
    return found


def switch_to_deploy(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Call ``switch_to_deploy()`` on every module of :func:`deployable_modules`; returns them."""
    modules = deployable_modules(model)
    for _, module in modules:
        module.switch_to_deploy()
    return modules


def _flat(outputs) -> List[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for v in outputs.values() for t in _flat(v)]
    if isinstance(outputs, (list, tuple)):
        return [t for v in outputs for t in _flat(v)]
    return []


def max_relative_error(outputs: Sequence[Tensor], reference: Sequence[Tensor]) -> float:
    """``max over outputs of max |a - b| / max |b|``: relative to each reference tensor's scale."""
    if len(outputs) != len(reference):
        raise ReparameterizationError(f'{len(outputs)} outputs after re-parameterisation, {len(reference)} before')
    errs = [0.]
    for a, b in zip(outputs, reference):
        if a.shape != b.shape:
            raise ReparameterizationError(f'output shape {tuple(a.shape)} after, {tuple(b.shape)} before')
        errs.append(((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item())
    return max(errs)


def reparameterize(model: nn.Module, inputs: Tensor, forward: Optional[Callable[[Tensor], object]] = None,
                   tol: float = 1e-4) -> Tuple[List[Tuple[str, nn.Module]], float]:
    """Switch ``model`` (in eval mode) to deploy and check it computes what it did.

    Args:
        model: the model; set to eval mode.
        inputs: a batch to compare on.
        forward: what to compare (default ``model(inputs)``), e.g. ``model.extract_feat``.
        tol: the largest accepted :func:`max_relative_error` (fp32 folding changes the rounding only, ~1e-6).

    Returns:
        ``(modules switched, relative error)``.

    Raises:
        ReparameterizationError: no module has ``switch_to_deploy``, or the outputs differ by more than ``tol``.
    """
    forward = forward or model
    model.eval()
    if not deployable_modules(model):
        raise ReparameterizationError(f'{type(model).__name__} has no module with switch_to_deploy(): nothing to '
                                      're-parameterise')
    with torch.no_grad():
        before = [t.detach().clone() for t in _flat(forward(inputs))]
        modules = switch_to_deploy(model)
        after = _flat(forward(inputs))
    err = max_relative_error(after, before)
    if not err <= tol:  # also NaN
        raise ReparameterizationError(f're-parameterised outputs differ by {err:.3g} (relative to their scale) > '
                                      f'{tol:g}: not the same function; nothing written')
    return modules, err


def _takes_deploy(module: nn.Module) -> bool:
    try:
        return 'deploy' in inspect.signature(type(module).__init__).parameters
    except (TypeError, ValueError):
        return False


def loading_note(modules: Sequence[Tuple[str, nn.Module]], root: str = 'model') -> dict:
    """How to build a model the deployed weights load into (strictly).

    Returns:
        ``dict(cfg_options=[...], switch=[...], text=...)``: config keys that build a module directly in its
        deployed form (a ``deploy`` constructor argument, e.g. SLaK), and modules that have none (e.g. RevCol): build
        those as usual and call their ``switch_to_deploy()`` before loading.
    """
    options, switch = [], []
    for name, module in modules:
        key = '.'.join(p for p in (root, name) if p)
        (options if _takes_deploy(module) else switch).append((key, type(module).__name__))
    parts = []
    if options:
        parts.append('build with ' + ' '.join(f'{k}.deploy=True' for k, _ in options)
                     + ' (e.g. --cfg-options)')
    if switch:
        parts.append('build as usual, call switch_to_deploy() on ' + ', '.join(f'{k} ({t})' for k, t in switch)
                     + ', then load_state_dict(strict=True)')
    return dict(cfg_options=[f'{k}.deploy=True' for k, _ in options], switch=[k for k, _ in switch],
                text='; '.join(parts))


def deployed_checkpoint(model: nn.Module, meta: dict, prefix: str = '') -> dict:
    """``{'state_dict': ..., 'meta': meta}`` with contiguous tensors (plain data: loads weights-only)."""
    state_dict = OrderedDict((prefix + k, v.detach().contiguous()) for k, v in model.state_dict().items())
    return {'state_dict': state_dict, 'meta': meta}


# ----------------------------------------------------------------------------------------------------------------
# SLaK from its weights alone (tools/deploy_slak.py)


def slak_from_checkpoint(src: str, src_prefix: Optional[str] = None,
                         use_ema: bool = False) -> Tuple[nn.Module, Dict[str, object]]:
    """A SLaK backbone built for the architecture a checkpoint's weights imply, loaded strictly.

    ``src`` is any SLaK layout (official classification ``model``/``model_ema``, mmdet/mmseg ``state_dict`` with
    ``backbone.``, or mmrevcol). Returns ``(model, constructor kwargs)``.
    """
    from mmrevcol.checkpoint import CheckpointMismatchError, read_checkpoint, to_backbone_state_dict
    from mmrevcol.checkpoint.slak import SLAK_LAYOUT, describe_arch
    from mmrevcol.models.backbones.slak import SLaK
    state_dict = to_backbone_state_dict(read_checkpoint(src), SLAK_LAYOUT, src_prefix, use_ema)
    arch = describe_arch(state_dict)
    if None in arch['dims'] or 0 in arch['depths'] or arch['decompose'] is None:
        raise CheckpointMismatchError(f'{src}: incomplete or already re-parameterised SLaK weights ({arch})')
    out = arch['out_norms']
    kwargs = dict(arch=dict(dims=arch['dims'], depths=arch['depths']), width_factor=1.0,
                  kernel_size=arch['kernel_size'], decompose=arch['decompose'], out_norm=bool(out),
                  out_indices=tuple(out) if out else (0, 1, 2, 3))
    model = SLaK(**kwargs)
    model.load_state_dict(state_dict, strict=True)
    return model, kwargs


def source_path(path: str) -> str:
    return osp.abspath(path) if path not in (None, 'none', 'None') else 'none'


# ----------------------------------------------------------------------------------------------------------------
# A model from a config (tools/deploy/reparameterize.py, tools/deploy/export.py)


def drop_pretrained(model_cfg) -> None:
    """Set every ``init_cfg=dict(type='Pretrained', ...)`` of a model config to None (in place): the weights come
    from the checkpoint being converted, so nothing is downloaded and no missing file stops the build."""
    if isinstance(model_cfg, dict):
        init = model_cfg.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            model_cfg['init_cfg'] = None
        for v in model_cfg.values():
            drop_pretrained(v)
    elif isinstance(model_cfg, (list, tuple)):
        for v in model_cfg:
            drop_pretrained(v)


def build_model(cfg) -> nn.Module:
    """``cfg.model`` built in the config's ``default_scope`` (the modules' default initialisation: the weights come
    from a checkpoint), pretrained ``init_cfg``\ s dropped, SyncBN as BN, on CPU, in eval mode."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    drop_pretrained(cfg.model)
    return revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
