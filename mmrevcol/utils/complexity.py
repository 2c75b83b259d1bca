"""FLOPs (multiply-accumulates) and parameters with mmengine's counter, the operator lists kept in the tool's log.

:func:`mmengine.analysis.get_model_complexity_info` warns, on the console, about every operator without a FLOP
handle (``aten::gelu``, ``aten::add``, ...) and every module the trace did not call: dozens of lines per model that
say nothing about the count a user asked for. The tools count through :func:`model_complexity`, which runs the
same analyzers with those warnings off and writes the lists to the tool's log (:mod:`mmrevcol.utils.noise`).
"""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from .noise import collected

__all__ = ['model_complexity', 'flop_analyzer', 'format_size', 'sparse_complexity']


def flop_analyzer(model: nn.Module, inputs: Tuple[Any, ...]):
    """mmengine's :class:`~mmengine.analysis.FlopAnalyzer` on ``inputs``, its console warnings off."""
    from mmengine.analysis import FlopAnalyzer
    return FlopAnalyzer(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def _log_skipped(analyzer, what: str) -> None:
    ops = analyzer.unsupported_ops()
    if ops:
        collected().note(f'{what}: operators without a FLOP handle (not counted): '
                         + ', '.join(f'{op} x{n}' for op, n in sorted(ops.items())))
    uncalled = analyzer.uncalled_modules()
    if uncalled:
        collected().note(f'{what}: modules not called by the traced forward: {", ".join(sorted(uncalled))}')


def format_size(x: float) -> str:
    """``25.5M``, ``4.54G``: mmengine's formatting of counts."""
    from mmengine.analysis.print_helper import _format_size
    return _format_size(int(x))


def model_complexity(model: nn.Module, inputs: Tuple[Any, ...], show_table: bool = False,
                     activations: bool = False) -> Dict[str, Any]:
    """What :func:`mmengine.analysis.get_model_complexity_info` returns (``flops``, ``flops_str``, ``params``,
    ``params_str``, ``out_table``; ``activations`` too when asked), with the counter's lists in the log.

    Args:
        model: the module to trace (in eval mode for inference counts).
        inputs: the positional inputs of its forward.
        show_table: also build the per-module table (``out_table``).
        activations: also count activations (a second trace).
    """
    from mmengine.analysis import ActivationAnalyzer, parameter_count
    from mmengine.analysis.print_helper import complexity_stats_table
    flops = flop_analyzer(model, inputs)
    acts = None
    if activations or show_table:
        acts = ActivationAnalyzer(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        total = flops.total()
    _log_skipped(flops, type(model).__name__)
    params = parameter_count(model)['']
    info = dict(flops=total, flops_str=format_size(total), params=params, params_str=format_size(params),
                out_table='')
    if acts is not None:
        info['activations'] = acts.total()
        info['activations_str'] = format_size(info['activations'])
    if show_table:
        info['out_table'] = '\n' + complexity_stats_table(flops=flops, activations=acts, show_param_shapes=True)
    return info


def sparse_complexity(model: nn.Module, inputs: Tuple[Any, ...], sparsity: float,
                      flops: Optional[float] = None) -> Dict[str, float]:
    """FLOPs and parameters of ``model`` with every conv / linear weight (2-D and 4-D) at density ``1 - sparsity``,
    the convention of sparse-training papers (SLaK publishes its counts at 40 % sparsity).

    Args:
        model: the (dense) module.
        inputs: its forward's inputs.
        sparsity: fraction of conv / linear weights that are zero.
        flops: the dense total, when already counted.

    Returns:
        ``dict(flops, params, weight_flops)``: totals with the sparse layers scaled, and the sparse layers' MACs.
    """
    density = 1. - sparsity
    with torch.no_grad():
        analyzer = flop_analyzer(model, inputs)
        ops = analyzer.by_operator()
        dense = analyzer.total() if flops is None else flops
    weighted = ops.get('conv', 0) + ops.get('linear', 0)
    params = sum(p.numel() * (density if p.ndim in (2, 4) else 1.) for p in model.parameters())
    return dict(flops=dense - sparsity * weighted, params=params, weight_flops=density * weighted)
