"""Checkpoints that load with plain ``torch.load(weights_only=True)``: the message hub and meta as plain data.

mmengine pickles ``HistoryBuffer`` objects and numpy scalars into the message hub and meta, so its checkpoints
only load weights-only in a process that has allow-listed mmengine's types. :func:`to_plain_checkpoint` turns them
into containers, tensors, numbers and strings before saving; :func:`from_plain_message_hub` rebuilds the
``HistoryBuffer`` objects on load, so resuming restores the loss history exactly.
"""
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = ['to_plain_checkpoint', 'from_plain_message_hub']


def _plain(obj: Any) -> Any:
    # numpy first: np.float64 and np.str_ are also float / str, yet pickle as numpy globals.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy()) if obj.dtype.kind in 'biuf' else _plain(obj.tolist())
    if isinstance(obj, (torch.Tensor, str, bytes, bool, int, float, type(None))):
        return obj
    if isinstance(obj, HistoryBuffer):
        return _plain_history_buffer(obj)
    if isinstance(obj, np.dtype):
        return str(obj)
    if isinstance(obj, OrderedDict):
        return OrderedDict((_plain(k), _plain(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, '_fields'):
        return tuple(_plain(v) for v in obj)
    return obj  # anything else is left as it is (and then needs an allow-list to load weights-only)


def _plain_history_buffer(buffer: HistoryBuffer) -> dict:
    log, count = buffer.data
    return dict(log_history=torch.from_numpy(np.asarray(log).copy()),
                count_history=torch.from_numpy(np.asarray(count).copy()), max_length=buffer.max_length)


def _is_plain_history_buffer(obj: Any) -> bool:
    return isinstance(obj, dict) and set(obj) == {'log_history', 'count_history', 'max_length'}


def to_plain_checkpoint(checkpoint: dict) -> None:
    """Turn the message hub, meta and any numpy value of ``checkpoint`` into plain data, in place.

    ``HistoryBuffer`` becomes ``dict(log_history=tensor, count_history=tensor, max_length=int)``, numpy arrays
    tensors, numpy scalars Python numbers, dtypes strings. Model and optimizer tensors are untouched.
    """
    for key in list(checkpoint):
        if key != 'state_dict':  # weights are tensors already; don't walk millions of entries
            checkpoint[key] = _plain(checkpoint[key])


def from_plain_message_hub(checkpoint: dict) -> None:
    """Rebuild the ``HistoryBuffer`` objects of a checkpoint written by :func:`to_plain_checkpoint`, in place."""
    hub = checkpoint.get('message_hub')
    if not isinstance(hub, dict) or not isinstance(hub.get('log_scalars'), dict):
        return
    for key, value in hub['log_scalars'].items():
        if _is_plain_history_buffer(value):
            hub['log_scalars'][key] = HistoryBuffer(
                np.asarray(value['log_history'].numpy()), np.asarray(value['count_history'].numpy()),
                int(value['max_length']))
