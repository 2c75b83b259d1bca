"""What a training hook costs: step times of a config's real training with and without it, in one process.

Used for :class:`mmrevcol.engine.FeatureStatsHook` (``tools/analysis/feature_stats_overhead.py``). A step is timed
from the first ``before_train_iter`` hook to the last ``after_train_iter`` hook (forward, backward, optimizer step
and every hook; data loading excluded), with device syncs at both ends. Runs alternate (without, with, without,
with, ...) so that slow drifts of the machine hit both alike.

A hook that only works every ``interval`` iterations and attaches nothing in between costs, amortised,
``(t_sampled - t_plain) / (interval * t_plain)``: the tool times the hook at ``interval=1`` (every step sampled,
medians compared: robust to outliers) and derives the amortised overhead for the intervals asked for.
"""
import copy
import statistics
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Sequence

from mmengine.hooks import Hook

from ..utils.profiling import describe_device, sync_device
from .features import load_config

__all__ = ['StepTimer', 'time_training_steps', 'measure_hook_overhead']


class StepTimer:
    """Two hooks around each training step: ``start`` (priority HIGHEST) and ``stop`` (LOWEST); ``times`` in s."""

    def __init__(self, device):
        self.device = device
        self.times: List[float] = []
        self._t0 = 0.0
        timer = self

        class _Start(Hook):
            priority = 'HIGHEST'

            def before_train_iter(self, runner, batch_idx, data_batch=None):
                sync_device(timer.device)
                timer._t0 = time.perf_counter()

        class _Stop(Hook):
            priority = 'LOWEST'

            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                sync_device(timer.device)
                timer.times.append(time.perf_counter() - timer._t0)

        self.start, self.stop = _Start(), _Stop()


def _quiet_training_cfg(cfg, iters: int, work_dir: str):
    """The config's training for ``iters`` iterations: no validation, no checkpoint, no per-step logging."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'overhead_{uuid.uuid4().hex[:8]}'
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.pop('max_epochs', None)
    cfg.train_cfg.val_interval = iters + 1
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None  # the loops validate after the last iteration otherwise
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=iters + 1)
    cfg.default_hooks.pop('visualization', None)
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')],
                          name=f'overhead_{uuid.uuid4().hex[:8]}')
    cfg.load_from, cfg.resume = None, False
    return cfg


def time_training_steps(cfg, iters: int, hooks: Sequence[dict] = (), device: Optional[str] = None) -> List[float]:
    """Step times (s) of ``iters`` training iterations of ``cfg`` with ``hooks`` (dicts) added."""
    import torch
    from mmengine.runner import Runner
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    with tempfile.TemporaryDirectory() as work_dir:
        runner = Runner.from_cfg(_quiet_training_cfg(cfg, iters, work_dir))
        timer = StepTimer(device)
        runner.register_hook(timer.start)
        runner.register_hook(timer.stop)
        for hook in hooks:
            runner.register_hook(copy.deepcopy(hook))
        runner.train()
    return timer.times


def measure_hook_overhead(config: str, hook: dict, cfg_options: Optional[dict] = None, iters: int = 30,
                          warmup: int = 5, rounds: int = 2, intervals: Sequence[int] = (10, 50, 100),
                          log=None) -> Dict:
    """Median step time without ``hook`` and with it at every step, and the amortised overhead at ``intervals``.

    Args:
        config (str): Training config (e.g. ``configs/acceptance/upernet_revcol_camvid.py``).
        hook (dict): The hook at every step, e.g. ``dict(type='FeatureStatsHook', interval=1)``.
        cfg_options (dict, optional): Overrides of the config.
        iters (int): Timed iterations per run (after ``warmup`` untimed ones).
        rounds (int): Alternations of (without, with).
        intervals (Sequence[int]): Intervals to derive the amortised overhead for.

    Returns:
        dict: ``plain_s``, ``hooked_s`` (medians), ``overhead_every_step`` (fraction), ``amortised``
        (interval -> fraction), the device and the raw times.
    """
    import torch
    device = 'cuda' if torch.cuda.is_available() else 'cpu'  # what the Runner trains on
    cfg = load_config(config, cfg_options)
    times: Dict[str, List[float]] = {'plain': [], 'hooked': []}
    time_training_steps(cfg, warmup, [], device)  # the process's first steps (kernel selection, allocator) untimed
    for r in range(rounds):
        for mode in ('plain', 'hooked'):
            steps = time_training_steps(cfg, warmup + iters, [hook] if mode == 'hooked' else [], device)
            times[mode] += steps[warmup:]
            if log:
                log(f'round {r + 1}/{rounds} {mode}: median {statistics.median(steps[warmup:]) * 1e3:.1f} ms/step')
    plain, hooked = statistics.median(times['plain']), statistics.median(times['hooked'])
    every = hooked / plain - 1
    return dict(config=config, hook=hook, device=describe_device(device), iters=iters, rounds=rounds, plain_s=plain,
                hooked_s=hooked, overhead_every_step=every,
                amortised={int(n): every / n for n in intervals}, times=times)
