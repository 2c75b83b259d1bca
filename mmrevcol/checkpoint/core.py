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
_BENIGN_MISSING = re.compile(r'(^|\.)num_batches_tracked$')  # BN counters: absent from many official files


@dataclass(frozen=True)
class Layout:
    """How checkpoints of one backbone family are recognised and converted.

    Args:
        name: The backbone's registered class name (``'RevCol'``, ``'SLaK'``, ...).
        convert: Backbone weights in any known layout of the family (official or ours; ``module.`` and the
            ``backbone.`` prefix already stripped) -> the backbone's own keys, head keys dropped. Idempotent.
        detect: True when a list of (prefix-stripped) keys holds weights of this family.
        adapt: Optional ``(state_dict, model, **options) -> state_dict`` for what depends on the built model (e.g.
            kernel padding to ``model.kernel_size``); runs after ``convert``, never when resuming.
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


def atomic_save(obj, filename: str) -> None:
    """``torch.save`` that never leaves a torn file (temp file, fsync, atomic rename: :func:`atomic_write`)."""
    import io

    import torch

    from ..utils.atomic_io import atomic_write
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(filename, buffer.getvalue())


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
                       use_ema: bool = False, logger='current') -> StateDict:
    """Convert (and adapt, e.g. kernel-pad) a loaded checkpoint for ``model``; strict check.

    For a module without a registered layout (mmpretrain's or timm's backbones, ...) keys it does not have (a
    classification head) are dropped and logged; what the module has must all be there, in the right shapes.
    """
    layout = layout_of(model)
    state_dict = to_backbone_state_dict(checkpoint, layout, prefix, use_ema)
    if layout.adapt is not None:
        state_dict = layout.adapt(state_dict, model)
    expected = model.state_dict()
    if layout.name not in _LAYOUTS:
        unused = sorted(k for k in state_dict if k not in expected)
        if unused and len(unused) < len(state_dict):
            print_log(f'{len(unused)} checkpoint keys that {layout.name} does not have were left out (a head?): '
                      f'{unused[:8]}{" ..." if len(unused) > 8 else ""}', logger=logger)
            state_dict = {k: v for k, v in state_dict.items() if k in expected}
    for key, value in expected.items():  # BN counters are not weights; many official files lack them
        if key not in state_dict and _BENIGN_MISSING.search(key):
            state_dict[key] = value
    check_state_dict(model, state_dict, layout)
    return state_dict


def load_pretrained(model: nn.Module, filename: str, prefix: Optional[str] = None, map_location='cpu',
                    use_ema: bool = False) -> StateDict:
    """``init_cfg=dict(type='Pretrained', ...)`` of a backbone: any known layout, strict. Returns what it loaded."""
    checkpoint = read_checkpoint(filename, map_location)
    try:
        state_dict = prepare_state_dict(model, checkpoint, prefix, use_ema)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f'{filename}: {e}') from None
    model.load_state_dict(state_dict, strict=True)
    print_log(f'{type(model).__name__}: loaded {len(state_dict)} tensors from {filename}', logger='current')
    return state_dict


# ----------------------------------------------------------------------------------------------------------------
# Whole-model checkpoints: load_from, --resume, tools/test.py
LOAD_MODES = ('load_from', 'resume', 'test')
TRAINING_KEYS = ('meta', 'state_dict')  # what mmengine's Runner.resume reads


def layout_modules(model: nn.Module) -> List[tuple]:
    """``(prefix, module, layout)`` of every submodule whose class has a registered layout (outermost only)."""
    found = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p, _, _ in found if p):
            continue
        layout = next((_LAYOUTS[c.__name__] for c in type(module).__mro__ if c.__name__ in _LAYOUTS), None)
        if layout is not None:
            found.append((f'{name}.' if name else '', module, layout))
    return found


def _is_class_dependent(key: str, ours: Tensor, theirs: Tensor, protected: Sequence[str]) -> bool:
    """A head layer whose shape differs only in the output dim: the class count of another dataset."""
    if any(key.startswith(p) for p in protected) or ours.dim() != theirs.dim():
        return False
    return ours.shape[0] != theirs.shape[0] and ours.shape[1:] == theirs.shape[1:]


def prepare_model_checkpoint(model: nn.Module, checkpoint, mode: str = 'load_from',
                             allow_partial: bool = False, allow_backbone_only: bool = False,
                             adapt_options: Optional[dict] = None, logger='current') -> StateDict:
    """The weights of ``checkpoint`` for the whole ``model`` (a detector, segmentor, classifier, ...).

    Backbones with a registered layout are converted (official key names) and adapted (kernel padding; never when
    resuming). Then, by ``mode``:

    - ``'resume'`` and ``'test'``: every key and shape must match; ``'resume'`` also needs a training checkpoint.
    - ``'load_from'``: strict about everything but the class-dependent head layers (shape differs only in the
      output dim, outside the backbone and neck: fine-tuning on another class count), which are dropped and logged.
      A backbone-only checkpoint is an error pointing at ``init_cfg`` unless ``allow_backbone_only``.

    ``allow_partial`` turns every remaining mismatch into one log line of what stays random / unused.
    ``adapt_options`` are passed to the layouts' ``adapt`` (e.g. ``std``/``seed`` of kernel padding).
    Raises :class:`CheckpointMismatchError` otherwise, naming the first keys of each kind and their counts.
    """
    if mode not in LOAD_MODES:
        raise ValueError(f'mode must be one of {LOAD_MODES}, got {mode!r}')
    if mode == 'resume':
        missing_keys = [k for k in TRAINING_KEYS if k not in (checkpoint if isinstance(checkpoint, Mapping) else {})]
        if missing_keys:
            raise CheckpointMismatchError(
                f'not a training checkpoint of this run (no {missing_keys}; it looks like pretrained weights): '
                '--resume continues a run from a checkpoint that run wrote; start from pretrained weights with '
                'load_from=... (a whole detector/segmentor) or model.backbone.init_cfg=dict(type=\'Pretrained\', '
                'checkpoint=...) (a backbone)')
    weights = {re.sub(r'^(module\.)+', '', k): v for k, v in extract_state_dict(checkpoint).items()}
    expected = model.state_dict()
    backbone_only = None
    for prefix, module, layout in layout_modules(model):
        if not prefix:
            weights = layout.convert(weights)
        elif any(k.startswith(prefix) for k in weights):
            sub = layout.convert({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
            weights = {k: v for k, v in weights.items() if not k.startswith(prefix)}
            weights.update({prefix + k: v for k, v in sub.items()})
        elif layout.detect(list(weights)):
            if not (allow_backbone_only or allow_partial) or mode != 'load_from':
                raise CheckpointMismatchError(
                    f'this is a backbone-only {layout.name} checkpoint (no {prefix}* keys): load it into the '
                    f'backbone with model.{prefix}init_cfg=dict(type=\'Pretrained\', checkpoint=...) '
                    '(e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH); load_from/--resume/test take a '
                    'checkpoint of the whole model')
            weights = {prefix + k: v for k, v in layout.convert(weights).items()}
            backbone_only = prefix
        else:
            continue
        if layout.adapt is not None and mode != 'resume':
            sub = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            weights.update({prefix + k: v for k, v in layout.adapt(sub, module, **(adapt_options or {})).items()})
    # BN counters are not weights; fill them from the model where a checkpoint lacks them
    for key, value in expected.items():
        if key not in weights and _BENIGN_MISSING.search(key):
            weights[key] = value
    missing, unexpected, shapes = state_dict_differences(expected, weights)
    notes = []
    if mode == 'load_from' and shapes:
        protected = [p for p, _, _ in layout_modules(model)] + ['backbone.', 'neck.']
        heads = [k for k in expected if k in weights and expected[k].shape != weights[k].shape
                 and _is_class_dependent(k, expected[k], weights[k], protected)]
        if heads:
            notes.append(f'class-dependent head layers left at their initialisation (the checkpoint has another '
                         f'class count) ({len(heads)}): {heads}')
            for k in heads:
                del weights[k]
            missing, unexpected, shapes = state_dict_differences(expected, weights)
            missing = [k for k in missing if k not in heads]
    if backbone_only and missing:
        outside = [k for k in missing if not k.startswith(backbone_only)]
        notes.append(f'backbone-only checkpoint: {len(outside)} weights outside {backbone_only}* keep their '
                     f'initialisation: {sorted({k.rsplit(".", 2)[0] for k in outside})[:8]} ...')
        missing = [k for k in missing if k.startswith(backbone_only)]
    if missing or unexpected or shapes:
        header = f'checkpoint does not match the model ({mode})'
        report = mismatch_report(missing, unexpected, shapes, header)
        if not allow_partial:
            raise CheckpointMismatchError(
                report + '\n(a partial load on purpose: load_from with CheckpointLoadingHook(allow_partial=True), '
                'see docs/downstream.md)')
        notes.append('allow_partial: ' + report.replace('\n', '; '))
        for k in [s.split(':')[0] for s in shapes] + unexpected:
            weights.pop(k, None)
    for note in notes:
        print_log(note, logger=logger)
    return weights
