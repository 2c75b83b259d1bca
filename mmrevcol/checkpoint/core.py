"""The one loading policy: read a checkpoint, find its weights, convert them to a backbone's layout, check, load.

Every path that puts weights into a model goes through here (``init_cfg`` Pretrained, ``load_from``, ``--resume``,
``tools/test.py``, ``KernelPaddingHook``, ``tools/convert_checkpoint.py``). The functions are pure (state dicts in,
state dicts out) and import no model code: backbones are named by their registered class name, and each backbone
family registers a :class:`Layout` that knows its official key names (``mmrevcol/checkpoint/<family>.py``).
"""
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from mmengine.logging import print_log
from torch import Tensor, nn


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model (wrong arch, wrong family, not a checkpoint at all)."""


# ----------------------------------------------------------------------------------------------------------------
# Layouts: one per backbone family
StateDict = Dict[str, Tensor]


@dataclass(frozen=True)
class Layout:
    """How checkpoints of one backbone family are recognised and converted.

    Args:
        name: The backbone's registered class name (``'RevCol'``, ``'SLaK'``, ...).
        convert: Backbone weights in any known layout of the family (official or ours; ``module.`` and the
            ``backbone.`` prefix already stripped) -> the backbone's own keys, head keys dropped. Idempotent.
        detect: True when a list of (prefix-stripped) keys holds weights of this family.
        adapt: Optional ``(state_dict, model) -> state_dict`` for what depends on the built model (e.g. kernel
            padding to ``model.kernel_size``); runs after ``convert``.
        describe: Optional ``state_dict -> dict``: the architecture a state dict implies, for error messages.
    """
    name: str
    convert: Callable[[StateDict], StateDict]
    detect: Callable[[Sequence[str]], bool]
    adapt: Optional[Callable[[StateDict, nn.Module], StateDict]] = None
    describe: Optional[Callable[[Mapping[str, Tensor]], dict]] = None


_LAYOUTS: Dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Register ``layout`` under ``layout.name`` (the backbone's class name)."""
    if layout.name in _LAYOUTS and _LAYOUTS[layout.name] != layout:
        raise KeyError(f'a checkpoint layout for {layout.name!r} is already registered')
    _LAYOUTS[layout.name] = layout
    return layout


def _identity_layout(name: str) -> Layout:
    return Layout(name=name, convert=dict, detect=lambda keys: False)


def layout_of(model: nn.Module) -> Layout:
    """The layout registered for ``model``'s class (or a base class); identity for other modules."""
    for cls in type(model).__mro__:
        if cls.__name__ in _LAYOUTS:
            return _LAYOUTS[cls.__name__]
    return _identity_layout(type(model).__name__)


def detect_layout(keys: Sequence[str]) -> Optional[Layout]:
    """The registered layout whose ``detect`` accepts ``keys`` (prefix-stripped); None if none does."""
    found = [layout for layout in _LAYOUTS.values() if layout.detect(keys)]
    if len(found) > 1:
        raise CheckpointMismatchError(f'ambiguous checkpoint: looks like {[f.name for f in found]}')
    return found[0] if found else None


def registered_layouts() -> List[str]:
    return sorted(_LAYOUTS)


# ----------------------------------------------------------------------------------------------------------------
# Reading and unwrapping
WEIGHT_KEYS = ('state_dict', 'model', 'module')
EMA_KEYS = ('ema_state_dict', 'model_ema', 'state_dict_ema', 'ema')


def read_checkpoint(filename: str, map_location='cpu'):
    """Load a checkpoint file with weights-only semantics; unreadable files become a clear error."""
    from mmengine.runner.checkpoint import _load_checkpoint
    try:
        return _load_checkpoint(filename, map_location=map_location)
    except FileNotFoundError:
        raise
    except Exception as e:  # corrupt/truncated zip, pickle refusing code (weights_only), ...
        raise CheckpointMismatchError(f'cannot read checkpoint {filename!r}: {type(e).__name__}: {e}') from e


def _tensors(mapping: Mapping) -> StateDict:
    return {k: v for k, v in mapping.items() if isinstance(v, Tensor)}


def extract_state_dict(checkpoint, use_ema: bool = False) -> StateDict:
    """The weights of a loaded checkpoint.

    Looks under ``state_dict``/``model``/``module`` (or the dict itself). EMA weights (``ema_state_dict`` of
    mmengine's EMAHook, ``model_ema`` of the official trainers) are taken when ``use_ema`` is set or when they are
    all the checkpoint holds; mmengine's EMA keys lose their ``module.`` prefix and ``steps`` counter.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f'a checkpoint must be a dict of weights, got {type(checkpoint).__name__}')
    plain = next((checkpoint[k] for k in WEIGHT_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
    ema = next((checkpoint[k] for k in EMA_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
    if use_ema and ema is None:
        raise CheckpointMismatchError(f'use_ema: the checkpoint holds no EMA weights (keys {list(checkpoint)[:8]})')
    if ema is not None and (use_ema or plain is None):
        weights = {k: v for k, v in _tensors(ema).items() if k != 'steps'}
    else:
        weights = _tensors(plain if plain is not None else checkpoint)
    if not weights:
        raise CheckpointMismatchError('the checkpoint holds no tensors (expected weights under state_dict, '
                                      f'model or at the top level; found keys {list(checkpoint)[:8]})')
    return weights


def strip_prefixes(state_dict: Mapping[str, Tensor], prefix: Optional[str] = None) -> StateDict:
    """Remove ``module.`` and the backbone prefix (``prefix``, or ``backbone.`` when such keys exist)."""
    out = {re.sub(r'^(module\.)+', '', k): v for k, v in state_dict.items()}
    if prefix is None and any(k.startswith('backbone.') for k in out):
        prefix = 'backbone.'
    if prefix:
        out = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
    return out


def to_backbone_state_dict(checkpoint, layout: Layout, prefix: Optional[str] = None,
                           use_ema: bool = False) -> StateDict:
    """Weights of a loaded checkpoint (any known layout of ``layout``'s family) in the backbone's own keys."""
    return layout.convert(strip_prefixes(extract_state_dict(checkpoint, use_ema), prefix))


# ----------------------------------------------------------------------------------------------------------------
# The strict report
def _listing(title: str, items: List[str], shown: int = 5) -> str:
    more = f' ... (+{len(items) - shown} more)' if len(items) > shown else ''
    return f'{title} ({len(items)}): {items[:shown]}{more}'


def state_dict_differences(expected: Mapping[str, Tensor], state_dict: Mapping[str, Tensor]):
    """(missing, unexpected, shape mismatches) of ``state_dict`` against ``expected``."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}'
              for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    return missing, unexpected, shapes


def mismatch_report(missing: List[str], unexpected: List[str], shapes: List[str], header: str) -> str:
    lines = [header]
    for title, items in (('missing in checkpoint', missing), ('unexpected in checkpoint', unexpected),
                         ('shape mismatch', shapes)):
        if items:
            lines.append(_listing(title, items))
    return '\n'.join(lines)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], layout: Optional[Layout] = None) -> None:
    """Raise :class:`CheckpointMismatchError` naming every difference between ``state_dict`` and ``model``."""
    expected = model.state_dict()
    missing, unexpected, shapes = state_dict_differences(expected, state_dict)
    if not (missing or unexpected or shapes):
        return
    layout = layout or layout_of(model)
    header = f'checkpoint does not match the {layout.name} model'
    if layout.describe is not None:
        header += f': checkpoint arch {layout.describe(state_dict)}, model arch {layout.describe(expected)}'
    raise CheckpointMismatchError(mismatch_report(missing, unexpected, shapes, header))


def prepare_state_dict(model: nn.Module, checkpoint, prefix: Optional[str] = None,
                       use_ema: bool = False) -> StateDict:
    """Convert (and adapt, e.g. kernel-pad) a loaded checkpoint for ``model``; strict check."""
    layout = layout_of(model)
    state_dict = to_backbone_state_dict(checkpoint, layout, prefix, use_ema)
    if layout.adapt is not None:
        state_dict = layout.adapt(state_dict, model)
    check_state_dict(model, state_dict, layout)
    return state_dict


def load_pretrained(model: nn.Module, filename: str, prefix: Optional[str] = None, map_location='cpu',
                    use_ema: bool = False) -> StateDict:
    """``init_cfg=dict(type='Pretrained', ...)`` of a backbone: any known layout, strict. Returns what it loaded."""
    checkpoint = read_checkpoint(filename, map_location)
    state_dict = prepare_state_dict(model, checkpoint, prefix, use_ema)
    model.load_state_dict(state_dict, strict=True)
    print_log(f'{type(model).__name__}: loaded {len(state_dict)} tensors from {filename}', logger='current')
    return state_dict
