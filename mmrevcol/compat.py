"""What today's PyTorch needs from the 2024 OpenMMLab stack.

torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine 0.10.7 calls ``torch.load`` without the
argument, so resuming fails on the objects it pickles into its own checkpoints (``HistoryBuffer`` in the message
hub, numpy scalars, arrays and dtypes). Rather than switching weights-only loading off (which lets a checkpoint run
arbitrary code), allow-list exactly those types.

One of them cannot be allow-listed safely: ``HistoryBuffer.__getstate__`` pickles its class-level table of statistics
functions, which pickle as ``getattr(HistoryBuffer, 'min')`` -- and allowing ``getattr`` would let a checkpoint
reach anything. That table is code, not state (it is rebuilt from the class on import), so HistoryBuffer is made to
pickle without it. Checkpoints written by mmengine without mmrevcol imported still carry it and cannot be resumed
under weights-only loading.

Checkpoints written through ``tools/train.py`` (``SafeCheckpointHook``, mmrevcol/engine/safe_checkpoint.py) need
none of this: their message hub and meta are stored as plain data, so a process that never imported mmrevcol loads
them with ``torch.load(weights_only=True)``. The allow-list stays for checkpoints of plain mmengine runs.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core
    names = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes as instances of per-type classes (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return names


SAFE_GLOBALS = [HistoryBuffer, *_numpy_globals()]


def _history_buffer_getstate(self) -> dict:
    # mmengine's version adds `statistics_methods` (functions) to the pickled state; keep only the data.
    return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def _make_history_buffer_picklable() -> None:
    for name in ('min', 'max', 'current', 'mean'):  # what HistoryBuffer.__init__ registers on the class
        HistoryBuffer._statistics_methods.setdefault(name, getattr(HistoryBuffer, name))
    HistoryBuffer.__getstate__ = _history_buffer_getstate


def allow_mmengine_checkpoints() -> None:
    """Allow-list the types mmengine writes into checkpoints for ``torch.load(weights_only=True)``."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(SAFE_GLOBALS)


allow_mmengine_checkpoints()
_make_history_buffer_picklable()
