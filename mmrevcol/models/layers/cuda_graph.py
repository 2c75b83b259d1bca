"""CUDA graphs for inference: replay a module's whole forward as one launch (small batches are launch-bound).

At batch 1 a backbone such as RevCol-T spends most of its GPU time launching hundreds of small kernels (every
column and fusion is several). A CUDA graph records the kernels of one forward once and replays them with a single
launch. :func:`enable_cuda_graphs` does that for any module's ``forward``, per input signature:

* the first call with a new signature (shapes, strides, dtype, device, autocast state) runs ``warmup`` eager
  forwards on a side stream, then captures one into a graph with static input buffers; later calls copy the inputs
  into those buffers, replay, and return the outputs (cloned by default: a replay overwrites them);
* up to ``max_graphs`` signatures are kept (least recently used dropped with their memory); detection inputs come
  in many sizes, so pad them to a few (mmdet's ``pad_size_divisor`` / fixed-size ``Pad``) to reuse graphs;
* anything a graph cannot stand for runs eagerly, with a one-time warning naming the reason: training mode,
  gradients wanted, inputs not on CUDA (so on a CPU-only machine the switch is a no-op), non-tensor or keyword
  arguments, tracing / compiling / exporting.

The module is patched in place (its ``forward`` attribute), so its type, ``state_dict`` and hooks stay as they are;
:func:`disable_cuda_graphs` restores it. Parameters must stay where they were when captured: a graph reads them
from their addresses, so load weights before the first captured call (or disable, load, enable again).

The alternative with the same effect, and a compile step: ``torch.compile(model, mode='reduce-overhead')``.
"""
import contextlib
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ['CUDAGraphForward', 'enable_cuda_graphs', 'disable_cuda_graphs', 'cuda_graphs_enabled']


def _map_tensors(fn: Callable[[Tensor], Tensor], obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, '_fields'):  # named tuple
        return type(obj)(*(_map_tensors(fn, o) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(fn, o) for o in obj)
    if isinstance(obj, dict):
        return type(obj)((k, _map_tensors(fn, v)) for k, v in obj.items())
    return obj


@contextlib.contextmanager
def _plain_no_grad():
    """No gradients, and ordinary (not inference-mode) tensors: the static buffers are written on every replay,
    which inference tensors forbid outside ``torch.inference_mode``, so a graph captured under
    ``inference_mode`` must still replay under ``no_grad`` (and the reverse)."""
    with torch.inference_mode(False), torch.no_grad():
        yield


class _Graph:
    __slots__ = ('graph', 'inputs', 'outputs')

    def __init__(self, graph, inputs: Tuple[Tensor, ...], outputs: Any):
        self.graph, self.inputs, self.outputs = graph, inputs, outputs


class CUDAGraphForward:
    """The callable :func:`enable_cuda_graphs` installs as ``module.forward``.

    Args:
        module (nn.Module): The module (only its training flag and parameters are looked at).
        forward (Callable): Its original forward (a bound method).
        max_graphs (int): Input signatures kept captured. Defaults to 8.
        warmup (int): Eager forwards on a side stream before a capture (lazy initialisations, cuDNN / Triton
            autotuning and compilation must happen outside the graph). Defaults to 2.
        clone_outputs (bool): Return copies of the graph's output buffers, which the next replay overwrites.
            False saves a copy per call when each output is consumed before the next call. Defaults to True.
    """

    def __init__(self, module: nn.Module, forward: Callable, max_graphs: int = 8, warmup: int = 2,
                 clone_outputs: bool = True):
        if not (isinstance(max_graphs, int) and max_graphs >= 1):
            raise ValueError(f'max_graphs must be an int >= 1, got {max_graphs!r}')
        if not (isinstance(warmup, int) and warmup >= 1):
            raise ValueError(f'warmup must be an int >= 1 (a capture needs a warmed-up forward), got {warmup!r}')
        self.module_ref = module
        self.eager_forward = forward
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.clone_outputs = clone_outputs
        self.graphs: 'OrderedDict[tuple, _Graph]' = OrderedDict()
        self.stats: Dict[str, int] = dict(captures=0, replays=0, eager=0)
        self._warned = set()

    # ------------------------------------------------------------------------------------------------------------
    def fallback_reason(self, args: tuple, kwargs: dict) -> Optional[str]:
        """Why this call runs eagerly, or None when a graph can stand for it."""
        if kwargs:
            return 'keyword arguments'
        if not args or not all(isinstance(a, Tensor) for a in args):
            return 'non-tensor positional arguments'
        if any(a.device.type != 'cuda' for a in args):
            return f'inputs on {args[0].device.type}, not CUDA'
        if self.module_ref.training:
            return 'training mode (graphs are for inference: call .eval())'
        if torch.is_grad_enabled() and (any(a.requires_grad for a in args)
                                        or any(p.requires_grad for p in self.module_ref.parameters())):
            return 'gradients wanted (run under torch.no_grad() or torch.inference_mode())'
        if (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
                or getattr(torch.compiler, 'is_exporting', lambda: False)()):
            return 'tracing, compiling or exporting'
        return None

    @staticmethod
    def signature(args: Tuple[Tensor, ...]) -> tuple:
        autocast = (torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda'))
        return autocast + tuple((tuple(a.shape), a.stride(), a.dtype, a.device) for a in args)

    def __call__(self, *args, **kwargs):
        reason = self.fallback_reason(args, kwargs)
        if reason is not None:
            self.stats['eager'] += 1
            if reason not in self._warned:
                self._warned.add(reason)
                warnings.warn(f'CUDA graphs of {type(self.module_ref).__name__}: running eagerly ({reason})',
                              UserWarning, stacklevel=3)
            return self.eager_forward(*args, **kwargs)
        key = self.signature(args)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.capture(args)
            self.graphs[key] = entry
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        with _plain_no_grad():
            for static, a in zip(entry.inputs, args):
                static.copy_(a)
            entry.graph.replay()
            self.stats['replays'] += 1
            return _map_tensors(Tensor.clone, entry.outputs) if self.clone_outputs else entry.outputs

    def capture(self, args: Tuple[Tensor, ...]) -> _Graph:
        """Warm up on a side stream, then record one forward on ``args``' signature (torch's recipe)."""
        device = args[0].device
        with _plain_no_grad():
            inputs = tuple(torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=device).copy_(a)
                           for a in args)
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    self.eager_forward(*inputs)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self.eager_forward(*inputs)
        self.stats['captures'] += 1
        return _Graph(graph, inputs, outputs)

    def reset(self) -> None:
        """Drop every captured graph (and its memory); the next calls capture again."""
        self.graphs.clear()


def enable_cuda_graphs(module: nn.Module, max_graphs: int = 8, warmup: int = 2,
                       clone_outputs: bool = True) -> nn.Module:
    """Replay ``module``'s forward from CUDA graphs (inference: eval mode, no gradients, CUDA inputs).

    Args:
        module (nn.Module): E.g. a backbone after ``switch_to_deploy()`` and ``.cuda().eval()``.
        max_graphs (int): Input signatures kept captured. Defaults to 8.
        warmup (int): Eager forwards before each capture. Defaults to 2.
        clone_outputs (bool): Return copies of the output buffers. Defaults to True.

    Returns:
        nn.Module: ``module`` itself, patched (idempotent: a second call replaces the settings, dropping graphs).

    Example::

        >>> model = RevCol('tiny').cuda().eval()
        >>> model.switch_to_deploy()
        >>> enable_cuda_graphs(model)
        >>> with torch.inference_mode():
        ...     feats = model(images)   # first call per input size captures, later calls replay
    """
    disable_cuda_graphs(module)
    module.forward = CUDAGraphForward(module, module.forward, max_graphs, warmup, clone_outputs)
    return module


def cuda_graphs_enabled(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get('forward'), CUDAGraphForward)


def disable_cuda_graphs(module: nn.Module) -> nn.Module:
    """Undo :func:`enable_cuda_graphs` (graphs and their memory are released)."""
    if cuda_graphs_enabled(module):
        module.__dict__['forward'].reset()
        del module.__dict__['forward']
    return module
