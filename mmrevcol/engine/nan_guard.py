"""Stop training at the first non-finite loss, before anything saves or evaluates the broken weights.

A NaN/Inf loss poisons the weights through the optimizer step of that same iteration; mmengine goes on training,
checkpointing and evaluating the NaN model and exits 0. :class:`NonFiniteLossHook` looks at the loss terms of
every iteration (the ``outputs`` of ``train_step``), right after the step and before the checkpoint, logger and
validation hooks, and raises :class:`NonFiniteLossError` naming the iteration and every loss term. The last
checkpoint written before it stays the newest one.

Mixed precision: a dynamic loss scaler skips steps whose *gradients* overflow; the loss itself stays finite, so
such steps pass. A non-finite *loss* stops the run with or without AMP.
"""
import math
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['NonFiniteLossError', 'NonFiniteLossHook', 'non_finite_terms', 'non_finite_weights']


class NonFiniteLossError(FloatingPointError):
    """A loss term was NaN or infinite."""


def _value(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(value)


def non_finite_terms(outputs: Dict) -> Dict[str, float]:
    """The loss terms (keys containing ``loss``, as mmengine sums them) of ``outputs`` that are NaN/Inf."""
    bad = {}
    for key, value in outputs.items():
        if 'loss' not in key:
            continue
        try:
            number = _value(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad[key] = number
    return bad


def non_finite_weights(module: torch.nn.Module, limit: int = 5) -> list:
    """Names of (up to ``limit``) floating-point parameters/buffers of ``module`` holding NaN or Inf."""
    bad = []
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
            if len(bad) == limit:
                break
    return bad


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` at the first iteration whose loss is NaN or infinite.

    In distributed training every rank stops together (one all-reduced flag per iteration), so no rank is left
    waiting in the next collective.
    """

    # After RuntimeInfoHook (VERY_HIGH, registered first), before LoggerHook, CheckpointHook and validation.
    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        bad = non_finite_terms(outputs) if isinstance(outputs, dict) else {}
        if is_distributed():
            flag = torch.tensor([1.0 if bad else 0.0])
            all_reduce(flag, op='sum')  # mmengine moves it to the backend's device (CUDA for nccl)
            if not bad and flag.item() > 0:
                raise NonFiniteLossError(f'non-finite loss on another rank at iteration {runner.iter + 1}; '
                                         'see that rank\'s log. Training stopped.')
        if not bad:
            return
        terms = ', '.join(f'{key}={_value(value):.6g}' for key, value in outputs.items() if 'loss' in key)
        last = runner.message_hub.get_info('last_ckpt')
        kept = f'the last checkpoint written is {last}' if last else 'no checkpoint was written'
        raise NonFiniteLossError(
            f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {terms}. Training '
            f'stopped before saving or evaluating these weights; {kept}. Lower the learning rate, add '
            'gradient clipping (optim_wrapper.clip_grad) or check the data of this iteration.')
