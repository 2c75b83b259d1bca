"""Dynamic sparse training (SLaK, official ``sparse_core.py``) and fixed-mask fine-tuning as one mmengine hook.

``DynamicSparsityHook`` keeps a boolean mask per sparse tensor (every 2-D/4-D parameter, or only the large
depthwise kernels) and:

* initialises it at the target sparsity with layer densities from 'snip' (one batch, global top-k of
  ``|w * dL/dw|``), 'erk' (Erdős–Rényi-kernel), 'uniform' or 'from_weights' (``w != 0``); each mask is drawn at
  random with its layer's density (exact counts, so the global density is exact);
* zeroes the masked-out weights *and their optimizer state* (SGD momentum, Adam ``exp_avg``/``exp_avg_sq``) after
  every real optimizer step: a ``torch.optim`` step post-hook, so it runs whatever the wrapper (plain, AMP,
  accumulation) — a step the AMP loss scaler skips leaves the weights untouched, hence still masked — and again
  after every training iteration;
* every ``update_interval`` iterations prunes ``ceil(rate * active)`` smallest-magnitude active weights per tensor
  and regrows as many at random among the inactive positions (new weights 0), ``rate`` following a cosine decay
  from ``prune_rate`` (0.3) to ``final_prune_rate`` (0.005) over the training: each tensor's density is unchanged;
* computes masks on rank 0 and broadcasts them, so every DDP rank holds the same masks;
* stores masks, update count and its random generator in checkpoints (``checkpoint['sparsity']``) and restores
  them on resume, so a resumed run continues as the uninterrupted one;
* logs the densities (``sparsity/density`` in the message hub, a per-layer summary on each update).

``fixed=True`` is the official downstream mode: mask = pretrained weight != 0 (loaded before training), applied
after every step, never updated. (The official code's defects avoided here: masks hard-wired to CUDA, and under
``--use_amp`` no mask step at all, so the model silently trained dense.)
"""
import math
import random
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import broadcast, get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch import Tensor, nn

from ..utils.model import unwrap_model
from .hook_args import check_bool, check_choice, check_int, check_number, check_optional_str

INITS = ('snip', 'erk', 'uniform', 'from_weights')
_STATE_KEYS = ('momentum_buffer', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'square_avg', 'acc_delta', 'sum')


def sparse_parameters(model: nn.Module, only_large_kernels: bool = False,
                      prefix: Optional[str] = None) -> 'OrderedDict[str, nn.Parameter]':
    """The parameters that get masks: every 2-D/4-D one, or only the large kernels of ``LargeKernelConv``s."""
    if only_large_kernels:
        from ..models.layers.large_kernel import LargeKernelConv
        names = set()
        for mname, m in model.named_modules():
            if isinstance(m, LargeKernelConv):
                for branch in ('tall', 'wide', 'square'):
                    if hasattr(m, branch):
                        names.add(f'{mname}.{branch}.conv.weight' if mname else f'{branch}.conv.weight')
                if m.deployed:
                    names.add(f'{mname}.fused.weight' if mname else 'fused.weight')
        selected = [(n, p) for n, p in model.named_parameters() if n in names]
    else:
        selected = [(n, p) for n, p in model.named_parameters() if p.ndim in (2, 4)]
    if prefix:
        selected = [(n, p) for n, p in selected if n.startswith(prefix)]
    return OrderedDict(selected)


# ----------------------------------------------------------------------------------------------------------------
# Layer densities
def erk_densities(shapes: Dict[str, torch.Size], density: float, power_scale: float = 1.0) -> Dict[str, float]:
    """Erdős–Rényi-kernel densities (RigL / official ``ERK``): ``d_l ∝ (sum of dims / numel) ** power_scale``,
    scaled so the total density is ``density``; layers that would exceed 1 are dense."""
    dense = set()
    while True:
        divisor, rhs, raw = 0., 0., {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense:
                rhs -= n * (1 - density)
            else:
                rhs += n * density
                raw[name] = (sum(shape) / n) ** power_scale
                divisor += raw[name] * n
        if not raw:
            break
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps <= 1:
            break
        dense.update(name for name, r in raw.items() if r == max_raw)
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}


def snip_densities(params: Dict[str, Tensor], grads: Dict[str, Tensor], density: float,
                   min_density: float = 0.05) -> Dict[str, float]:
    """Layer densities from a global top-k of ``|w * dL/dw|`` at ``density`` (SNIP, the official default).

    A layer SNIP would (nearly) empty cuts the network; densities are floored at ``min_density`` and the other
    layers scaled down so that the total stays ``density``."""
    scores = torch.cat([(params[n] * grads[n]).abs().flatten().float() for n in params])
    keep = max(1, int(round(density * scores.numel())))
    threshold = torch.topk(scores, keep, sorted=True).values[-1]
    raw = {n: ((params[n] * grads[n]).abs().float() >= threshold).float().mean().item() for n in params}
    return floor_densities(raw, {n: p.numel() for n, p in params.items()}, density, min_density)


def floor_densities(densities: Dict[str, float], numels: Dict[str, int], density: float,
                    min_density: float) -> Dict[str, float]:
    """Clamp layer densities to ``[min_density, 1]`` keeping the parameter-weighted mean at ``density``."""
    floor = min(min_density, density)
    out = dict(densities)
    total = sum(numels.values())
    for _ in range(len(out) + 1):
        fixed = {n for n, d in out.items() if d <= floor or d >= 1}
        out = {n: min(max(d, floor), 1.) for n, d in out.items()}
        free = [n for n in out if n not in fixed]
        budget = density * total - sum(out[n] * numels[n] for n in fixed)
        current = sum(out[n] * numels[n] for n in free)
        if not free or current <= 0:
            break
        scale = budget / current
        out.update({n: out[n] * scale for n in free})
        if all(floor <= out[n] <= 1 for n in free):
            break
    return out


def random_mask(shape: torch.Size, density: float, generator: torch.Generator) -> Tensor:
    """A boolean mask with exactly ``round(density * numel)`` True entries at uniformly random positions."""
    numel = math.prod(shape)
    k = int(round(density * numel))
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:k]] = True
    return mask.view(shape)


def prune_and_regrow(weight: Tensor, mask: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """Magnitude prune ``ceil(rate * active)`` active weights, regrow as many random inactive positions.

    Regrown positions are drawn among those inactive *after* pruning (the just-pruned ones included, as the
    official random growth), so the number of active weights is unchanged.
    """
    mask = mask.cpu()
    active = int(mask.sum())
    n = min(math.ceil(rate * active), active)
    if n == 0:
        return mask
    magnitude = weight.detach().abs().float().cpu().flatten()
    flat = mask.flatten().clone()
    candidates = magnitude.masked_fill(~flat, float('inf'))
    flat[torch.topk(candidates, n, largest=False, sorted=False).indices] = False
    inactive = (~flat).nonzero().flatten()
    grow = inactive[torch.randperm(inactive.numel(), generator=generator)[:n]]
    flat[grow] = True
    return flat.view(mask.shape)


# ----------------------------------------------------------------------------------------------------------------
@HOOKS.register_module()
class DynamicSparsityHook(Hook):
    """Dynamic sparse training (prune / regrow) or fixed-mask fine-tuning.

    Args:
        sparsity (float): Target fraction of zero weights among the masked tensors. Defaults to 0.4.
        init (str): Initial layer densities: 'snip' | 'erk' | 'uniform' | 'from_weights'. Defaults to 'snip'.
        update_interval (int): Prune / regrow every this many iterations. Defaults to 100 (2000 in the SLaK
            ImageNet recipes).
        prune_rate (float): Initial fraction of active weights pruned (and regrown) per update. Defaults to 0.3.
        final_prune_rate (float): Rate at the end of the cosine decay. Defaults to 0.005.
        stop_iter (int, optional): No updates from this iteration on. Defaults to the end of training.
        only_large_kernels (bool): Mask only the large depthwise kernels (official ``--only_L``). Defaults to False.
        prefix (str, optional): Only parameters whose name (in the unwrapped model) starts with it, e.g.
            ``'backbone.'``. Defaults to all.
        fixed (bool): Fixed-mask fine-tuning: masks from the loaded weights (``w != 0``, ``init`` ignored), never
            updated. Defaults to False.
        erk_power_scale (float): Exponent of the ERK densities. Defaults to 1.0.
        seed (int): Seed of the hook's own generator (mask draws, regrowth). Defaults to 0.
    """
    priority = 'HIGH'  # before the logger/checkpoint hooks: they see the updated masks

    def __init__(self, sparsity: float = 0.4, init: str = 'snip', update_interval: int = 100,
                 prune_rate: float = 0.3, final_prune_rate: float = 0.005, stop_iter: Optional[int] = None,
                 only_large_kernels: bool = False, prefix: Optional[str] = None, fixed: bool = False,
                 erk_power_scale: float = 1.0, seed: int = 0):
        name = type(self).__name__  # every argument checked here: a config typo fails before anything is built
        self.sparsity = check_number(name, 'sparsity', sparsity, 0, 1, high_open=True)
        self.init = 'from_weights' if check_bool(name, 'fixed', fixed) else check_choice(name, 'init', init, INITS)
        self.update_interval = check_int(name, 'update_interval', update_interval, minimum=1)
        self.prune_rate = check_number(name, 'prune_rate', prune_rate, 0, 1)
        self.final_prune_rate = check_number(name, 'final_prune_rate', final_prune_rate, 0, 1)
        self.stop_iter = check_int(name, 'stop_iter', stop_iter, minimum=0, allow_none=True)
        self.only_large_kernels = check_bool(name, 'only_large_kernels', only_large_kernels)
        self.prefix = check_optional_str(name, 'prefix', prefix)
        self.fixed = fixed
        self.erk_power_scale = check_number(name, 'erk_power_scale', erk_power_scale, 0, low_open=True)
        self.generator = torch.Generator().manual_seed(check_int(name, 'seed', seed, minimum=0))
        self.masks: 'OrderedDict[str, Tensor]' = OrderedDict()
        self.num_updates = 0
        self._restored: Optional[dict] = None
        self._params: Dict[str, nn.Parameter] = {}
        self._optimizers: List[torch.optim.Optimizer] = []
        self._handles: List = []

    # ------------------------------------------------------------------------------------------------------------
    @property
    def density(self) -> float:
        """Current density of the masked tensors (fraction of True)."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / max(total, 1)

    def layer_densities(self) -> Dict[str, float]:
        return {n: m.float().mean().item() for n, m in self.masks.items()}

    def rate_at(self, iteration: int, max_iters: int) -> float:
        """Cosine-decayed prune rate (official ``CosineDecay``: ``CosineAnnealingLR`` with ``eta_min``)."""
        t = min(iteration / max(max_iters, 1), 1.0)
        return self.final_prune_rate + (self.prune_rate - self.final_prune_rate) * 0.5 * (1 + math.cos(math.pi * t))

    @torch.no_grad()
    def apply_masks(self, optimizers: Sequence[torch.optim.Optimizer] = ()) -> None:
        """Zero the masked-out weights and their optimizer state."""
        for name, mask in self.masks.items():
            param = self._params[name]
            m = mask.to(param.device)
            param.mul_(m)
            for optimizer in optimizers:
                state = optimizer.state.get(param, {})
                for key in _STATE_KEYS:
                    value = state.get(key)
                    if isinstance(value, Tensor) and value.shape == param.shape:
                        value.mul_(m)

    def _broadcast_masks(self) -> None:
        # rank 0's masks everywhere: DDP ranks must prune/regrow identically
        for name in self.masks:
            t = self.masks[name].to(torch.uint8)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                t = t.to(self._params[name].device)
                broadcast(t, src=0)
            self.masks[name] = t.cpu().bool()

    # ------------------------------------------------------------------------------------------------------------
    def setup(self, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer] = (), batch_loss=None) -> None:
        """Create (or adopt restored) masks for ``model`` and apply them; usable without a Runner.

        ``batch_loss`` (callable returning a scalar loss on one batch) is needed for ``init='snip'``.
        """
        model = unwrap_model(model)
        self._params = sparse_parameters(model, self.only_large_kernels, self.prefix)
        if not self._params:
            raise ValueError('DynamicSparsityHook: no parameter to sparsify (no 2-D/4-D weights, or no large '
                             'kernels with only_large_kernels=True)')
        restored = self._restored
        if restored is not None and set(restored['masks']) == set(self._params):
            self.masks = OrderedDict((n, restored['masks'][n].cpu().bool()) for n in self._params)
            self.num_updates = int(restored.get('num_updates', 0))
            if restored.get('generator') is not None:
                self.generator.set_state(restored['generator'])
            source = 'restored from the checkpoint'
        else:
            if restored is not None:
                print_log('DynamicSparsityHook: the checkpoint\'s masks do not fit this model; new masks',
                          logger='current')
            self.masks = self._initial_masks(model, batch_loss)
            source = f'init {self.init!r}'
        self._broadcast_masks()
        self.apply_masks(optimizers)
        self._restored = None
        for handle in self._handles:
            handle.remove()
        self._handles = [opt.register_step_post_hook(self._after_step) for opt in optimizers]
        self._optimizers = list(optimizers)
        print_log(f'DynamicSparsityHook: {len(self.masks)} masked tensors ({source}), density {self.density:.4f}'
                  f'{" (fixed masks)" if self.fixed else ""}', logger='current')

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.apply_masks([optimizer])

    def _initial_masks(self, model: nn.Module, batch_loss) -> 'OrderedDict[str, Tensor]':
        density = 1. - self.sparsity
        if self.init == 'from_weights':
            return OrderedDict((n, (p.detach() != 0).cpu()) for n, p in self._params.items())
        if self.init == 'uniform':
            densities = {n: density for n in self._params}
        elif self.init == 'erk':
            densities = erk_densities({n: p.shape for n, p in self._params.items()}, density, self.erk_power_scale)
        else:
            if batch_loss is None:
                raise ValueError("init='snip' needs one batch (a Runner with a train dataloader)")
            densities = snip_densities(dict(self._params), self._snip_grads(model, batch_loss), density)
        return OrderedDict((n, random_mask(p.shape, densities[n], self.generator)) for n, p in self._params.items())

    def _snip_grads(self, model: nn.Module, batch_loss) -> Dict[str, Tensor]:
        # one forward/backward that leaves no trace: BN statistics and .grad restored
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        old_grads = {n: p.grad for n, p in self._params.items()}
        for p in self._params.values():
            p.grad = None
        with torch.enable_grad():
            batch_loss().backward()
        grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                 for n, p in self._params.items()}
        model.zero_grad(set_to_none=True)
        for n, p in self._params.items():
            p.grad = old_grads[n]
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        return grads

    @torch.no_grad()
    def update(self, iteration: int, max_iters: int) -> float:
        """One prune / regrow round at the rate of ``iteration``; returns the rate used."""
        rate = self.rate_at(iteration, max_iters)
        for name in self.masks:
            self.masks[name] = prune_and_regrow(self._params[name], self.masks[name], rate, self.generator)
        self._broadcast_masks()
        self.apply_masks(self._optimizers)
        self.num_updates += 1
        return rate

    # ------------------------------------------------------------------------------------------------------------
    # Runner hooks
    @staticmethod
    def _runner_optimizers(runner) -> List[torch.optim.Optimizer]:
        wrapper = getattr(runner, 'optim_wrapper', None)
        if wrapper is None:
            return []
        if hasattr(wrapper, 'optim_wrappers'):  # OptimWrapperDict
            return [w.optimizer for w in wrapper.optim_wrappers.values()]
        return [wrapper.optimizer]

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)

        def batch_loss():
            # The extra batch must not shift the global RNGs (data augmentation): a resumed run, which restores
            # the masks instead, replays the same random stream.
            states = random.getstate(), np.random.get_state(), torch.get_rng_state()
            try:
                # from the dataset, not through the loader: a second iterator over mmengine's InfiniteSampler
                # would close its shared index generator
                loader = runner.train_dataloader
                size = loader.batch_size or 1
                batch = loader.collate_fn([loader.dataset[i % len(loader.dataset)] for i in range(size)])
                data = model.data_preprocessor(batch, True)
                loss, _ = model.parse_losses(model(**data, mode='loss'))
            finally:
                random.setstate(states[0])
                np.random.set_state(states[1])
                torch.set_rng_state(states[2])
            return loss

        self.setup(runner.model, self._runner_optimizers(runner), batch_loss)
        self._log(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.apply_masks(self._optimizers)
        step = runner.iter + 1
        stop = self.stop_iter if self.stop_iter is not None else runner.max_iters
        if self.fixed or step % self.update_interval != 0 or step >= stop:
            runner.message_hub.update_scalar('train/density', self.density)
            return
        rate = self.update(step, runner.max_iters)
        self._log(runner, rate)

    def _log(self, runner, rate: Optional[float] = None) -> None:
        density = self.density
        runner.message_hub.update_scalar('train/density', density)
        if get_rank() != 0:
            return
        layers = self.layer_densities()
        what = f'update {self.num_updates} at iter {runner.iter + 1}, prune rate {rate:.4f}' if rate is not None \
            else 'masks'
        runner.logger.info(f'DynamicSparsityHook: {what}: density {density:.4f} over {len(layers)} tensors '
                           f'(per tensor min {min(layers.values()):.3f}, max {max(layers.values()):.3f})')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['sparsity'] = dict(masks=OrderedDict((n, m.clone()) for n, m in self.masks.items()),
                                      num_updates=self.num_updates, generator=self.generator.get_state(),
                                      sparsity=self.sparsity, fixed=self.fixed)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'sparsity' in checkpoint:
            self._restored = checkpoint['sparsity']
