"""DynamicSparsityHook: densities, prune/regrow, masks after every optimizer step (AMP, skipped steps, bf16),
checkpoint/resume identity, fixed-mask fine-tuning, rank-0 broadcast."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmrevcol  # noqa: F401
from mmrevcol.engine.sparsity import (DynamicSparsityHook, erk_densities, floor_densities, prune_and_regrow,
                                      random_mask, sparse_parameters)
from mmrevcol.models.backbones.slak import SLaK

ARCH = dict(dims=[8, 16, 16, 16], depths=[1, 1, 1, 1])


class Toy(BaseModel):
    """A tiny SLaK classifier; ``overflow_at`` makes the loss inf at those iterations (an fp16 overflow)."""

    def __init__(self, overflow_at=()):
        super().__init__()
        self.backbone = SLaK(arch=ARCH, kernel_size=[7, 7, 5, 5, 3], width_factor=1.0, out_indices=(3, ),
                             out_norm=False, layer_scale_init_value=1.0)
        self.head = nn.Linear(16, 3)
        self.overflow_at = set(overflow_at)
        self.calls = 0

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0].mean([-2, -1]))
        if mode == 'loss':
            self.calls += 1
            loss = F.cross_entropy(logits.float(), labels)
            if self.calls - 1 in self.overflow_at:
                loss = loss * float('inf')
            return dict(loss=loss)
        return logits


class Data(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 32, 32, generator=g), labels=i % 3)


@OPTIM_WRAPPERS.register_module(force=True)
class CPUScalerAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's AmpOptimWrapper (bf16 autocast on CPU) with a real CPU GradScaler: what AMP does on a GPU,
    incl. skipping the optimizer step when the scaled gradients overflow."""

    def __init__(self, **kwargs):
        import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
        real = amp.is_cuda_available
        amp.is_cuda_available = lambda: True  # it refuses to be built without an accelerator
        try:
            super().__init__(**kwargs)
        finally:
            amp.is_cuda_available = real
        self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=256.)


class Kill(Hook):
    priority = 'LOWEST'  # after the CheckpointHook saved

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise KeyboardInterrupt('killed')


class Record(Hook):
    """After the sparsity hook: weights, masks and optimizer states of every iteration."""
    priority = 'LOW'

    def __init__(self):
        self.history = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        hook = next(h for h in runner.hooks if isinstance(h, DynamicSparsityHook))
        opt = runner.optim_wrapper.optimizer
        self.history.append(dict(
            masks={n: m.clone() for n, m in hook.masks.items()},
            params={n: p.detach().clone() for n, p in hook._params.items()},
            states={n: {k: v.clone() for k, v in opt.state.get(p, {}).items() if torch.is_tensor(v) and v.ndim}
                    for n, p in hook._params.items()},
            density=hook.density, updates=hook.num_updates,
            scale=float(runner.optim_wrapper.loss_scaler.get_scale())
            if hasattr(runner.optim_wrapper, 'loss_scaler') else None))


def make_runner(tmp_path, hook_cfg, max_iters=8, optim=None, extra_hooks=(), resume=False, model=None,
                name='run', sampler='DefaultSampler'):
    if model is None:
        torch.manual_seed(0)  # the same initial weights in every run
        model = Toy()
    return Runner(
        model=model, work_dir=str(tmp_path / name),
        train_dataloader=dict(dataset=Data(), sampler=dict(type=sampler, shuffle=True), batch_size=4,
                              num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=optim or dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[dict(type='DynamicSparsityHook', **hook_cfg), *extra_hooks],
        randomness=dict(seed=0), resume=resume, log_level='WARNING')


def check_masked(record):
    for name, mask in record['masks'].items():
        assert torch.all(record['params'][name][~mask] == 0), name
        for key, state in record['states'][name].items():
            assert torch.all(state[~mask] == 0), (name, key)


# ----------------------------------------------------------------------------------------------------------------
def test_runner_snip_prune_regrow_keeps_density(tmp_path):
    record = Record()
    # InfiniteSampler: the SNIP batch must not touch the loader (its shared index generator would be closed)
    runner = make_runner(tmp_path, dict(sparsity=0.4, init='snip', update_interval=2), extra_hooks=[record],
                         sampler='InfiniteSampler')
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, DynamicSparsityHook))
    names = set(hook.masks)
    assert names == {n for n, p in runner.model.named_parameters() if p.ndim in (2, 4)}
    assert 'head.weight' in names and 'backbone.stages.0.0.depthwise_conv.tall.conv.weight' in names
    assert [r['updates'] for r in record.history] == [0, 1, 1, 2, 2, 3, 3, 3]  # none at the last iteration
    counts = [{n: int(m.sum()) for n, m in r['masks'].items()} for r in record.history]
    for r, c in zip(record.history, counts):
        assert abs(r['density'] - 0.6) < 0.01
        assert c == counts[0]  # prune/regrow preserves every tensor's count exactly
        check_masked(r)
    changed = [any(not torch.equal(a['masks'][n], b['masks'][n]) for n in names)
               for a, b in zip(record.history, record.history[1:])]
    assert changed == [True, False, True, False, True, False, False]
    # snip: layer densities differ (global top-k), unlike uniform
    assert len({round(v, 2) for v in hook.layer_densities().values()}) > 1
    ckpt = torch.load(tmp_path / 'run' / 'iter_8.pth', weights_only=True)
    assert set(ckpt['sparsity']['masks']) == names and ckpt['sparsity']['num_updates'] == 3
    assert runner.message_hub.get_scalar('train/density').current() == pytest.approx(hook.density)


def test_killed_and_resumed_run_ends_identical(tmp_path):
    cfg = dict(sparsity=0.4, init='erk', update_interval=2, seed=3)
    optim = dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05))
    straight = make_runner(tmp_path, cfg, optim=optim, name='straight')
    straight.train()
    killed = make_runner(tmp_path, cfg, optim=optim, extra_hooks=[Kill(at=5)], name='resumed')
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = make_runner(tmp_path, cfg, optim=optim, resume=True, name='resumed')  # from iter_4.pth
    resumed.train()
    a = next(h for h in straight.hooks if isinstance(h, DynamicSparsityHook))
    b = next(h for h in resumed.hooks if isinstance(h, DynamicSparsityHook))
    assert b.num_updates == a.num_updates == 3
    for n in a.masks:
        assert torch.equal(a.masks[n], b.masks[n]), n
    for (n, p), (_, q) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(p, q), n


def test_amp_bf16_autocast_and_skipped_steps(tmp_path):
    """Under AMP (bf16 autocast on CPU, a real GradScaler), including steps the scaler skips on overflow: masks
    are applied, prune/regrow happens, pruned weights and their optimizer state stay exactly zero."""
    record = Record()
    runner = make_runner(tmp_path, dict(sparsity=0.4, init='uniform', update_interval=3), max_iters=7,
                         model=Toy(overflow_at={2, 3}), extra_hooks=[record],
                         optim=dict(type='CPUScalerAmpOptimWrapper', dtype='bfloat16',
                                    optimizer=dict(type='SGD', lr=0.05, momentum=0.9)))
    runner.train()
    hist = record.history
    scales = [r['scale'] for r in hist]
    assert scales[2] < scales[1] and scales[3] < scales[2]  # the scaler skipped iterations 2 and 3
    # a skipped step leaves the weights as they were (still masked); the prune/regrow due after iteration 2 (the
    # third) happened anyway: only the newly pruned weights changed (to 0)
    assert [r['updates'] for r in hist] == [0, 0, 1, 1, 1, 2, 2]
    for n in hist[1]['params']:
        keep = hist[2]['masks'][n]
        assert torch.equal(hist[2]['params'][n][keep], hist[1]['params'][n][keep])
        assert torch.equal(hist[3]['params'][n], hist[2]['params'][n])
        assert not torch.equal(hist[4]['params'][n], hist[3]['params'][n]) or n.endswith('head.weight')
    for r in hist:
        check_masked(r)
        assert abs(r['density'] - 0.6) < 0.01
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
    assert runner.optim_wrapper.cast_dtype == torch.bfloat16


def test_mask_follows_every_optimizer_step_without_runner():
    """The step post-hook: any code path that steps the optimizer (here a bare loop) leaves pruned weights zero."""
    torch.manual_seed(0)
    model = Toy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    hook = DynamicSparsityHook(sparsity=0.5, init='uniform')
    hook.setup(model, [optimizer])
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    for _ in range(3):
        optimizer.zero_grad()
        model(x, y, mode='loss')['loss'].backward()
        optimizer.step()
        for name, mask in hook.masks.items():
            p = hook._params[name]
            assert torch.all(p[~mask] == 0)
            assert torch.all(optimizer.state[p]['exp_avg'][~mask] == 0)
    assert hook.density == pytest.approx(0.5, abs=1e-3)


def test_fixed_mask_finetuning_keeps_pruned_weights_zero(tmp_path):
    model = Toy()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a "sparse pretrained" backbone: 40% exact zeros
        for p in model.backbone.parameters():
            if p.ndim in (2, 4):
                p.mul_(random_mask(p.shape, 0.6, gen))
    zeros = {n: (p == 0).clone() for n, p in model.named_parameters() if n.startswith('backbone.') and p.ndim > 1}
    torch.save({'state_dict': model.backbone.state_dict()}, tmp_path / 'sparse_backbone.pth')
    model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'sparse_backbone.pth'))
    record = Record()
    runner = make_runner(tmp_path, dict(fixed=True, prefix='backbone.', update_interval=1), max_iters=4,
                         model=model, extra_hooks=[record],
                         optim=dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)))
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, DynamicSparsityHook))
    assert set(hook.masks) == set(zeros) and hook.num_updates == 0
    for n, z in zeros.items():
        p = dict(runner.model.named_parameters())[n]
        assert torch.all(p[z] == 0), n
        assert torch.equal(hook.masks[n], ~z)
    assert not torch.equal(record.history[0]['params'][n], record.history[-1]['params'][n])  # it trained


def test_densities_and_selection():
    model = Toy()
    params = sparse_parameters(model)
    shapes = {n: p.shape for n, p in params.items()}
    erk = erk_densities(shapes, 0.6)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(erk[n] * math.prod(s) for n, s in shapes.items()) / total == pytest.approx(0.6)
    assert all(0 < d <= 1 for d in erk.values())
    floored = floor_densities({'a': 0.0, 'b': 0.9, 'c': 0.5}, {'a': 100, 'b': 1000, 'c': 500}, 0.6, 0.05)
    assert floored['a'] == 0.05 and sum(floored[k] * n for k, n in (('a', 100), ('b', 1000), ('c', 500))) == \
        pytest.approx(0.6 * 1600)
    # the large kernels only: the K×s / s×K strips (official --only_L)
    large = sparse_parameters(model, only_large_kernels=True)
    assert large and all(n.endswith(('tall.conv.weight', 'wide.conv.weight')) for n in large)
    hook = DynamicSparsityHook(sparsity=0.4, init='uniform', only_large_kernels=True)
    hook.setup(model)
    assert set(hook.masks) == set(large) and hook.density == pytest.approx(0.6, abs=0.02)
    with pytest.raises(ValueError, match='init'):
        DynamicSparsityHook(init='random')
    with pytest.raises(ValueError, match='snip'):
        DynamicSparsityHook(init='snip').setup(Toy())


@pytest.mark.parametrize('kwargs, error, text', [
    (dict(update_interval=2.5), TypeError, 'update_interval must be an int >= 1, got 2.5 (float)'),
    (dict(update_interval=True), TypeError, 'update_interval must be an int >= 1, got True (bool)'),
    (dict(update_interval=0), ValueError, 'update_interval must be an int >= 1, got 0'),
    (dict(sparsity='0.4'), TypeError, "sparsity must be a number in [0, 1), got '0.4' (str)"),
    (dict(sparsity=1), ValueError, 'sparsity must be a number in [0, 1), got 1.0'),
    (dict(sparsity=False), TypeError, 'sparsity must be a number in [0, 1), got False (bool)'),
    (dict(prune_rate=1.5), ValueError, 'prune_rate must be a number in [0, 1]'),
    (dict(stop_iter=10.0), TypeError, 'stop_iter must be an int >= 0 or None'),
    (dict(fixed='yes'), TypeError, 'fixed must be True or False'),
    (dict(prefix=3), TypeError, 'prefix must be a string or None'),
    (dict(seed=-1), ValueError, 'seed must be an int >= 0'),
])
def test_arguments_are_checked_with_types(kwargs, error, text):
    """Issue #18 row 9: a config typo fails at construction, naming the argument, before anything is built."""
    with pytest.raises(error) as info:
        DynamicSparsityHook(**kwargs)
    assert str(info.value).startswith('DynamicSparsityHook: ') and text in str(info.value), str(info.value)


def test_prune_and_regrow_and_cosine_rate():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30)
    mask = random_mask(w.shape, 0.6, gen)
    w = w * mask
    new = prune_and_regrow(w, mask, 0.3, gen)
    assert int(new.sum()) == int(mask.sum())
    pruned = mask & ~new
    n = math.ceil(0.3 * int(mask.sum()))
    # exactly the n smallest active magnitudes went (some may have been regrown at random)
    smallest = w.abs()[mask].sort().values[n - 1]
    assert torch.all(w.abs()[pruned] <= smallest)
    assert int((new & ~mask).sum()) == int(pruned.sum())
    hook = DynamicSparsityHook(prune_rate=0.3, final_prune_rate=0.005)
    assert hook.rate_at(0, 100) == pytest.approx(0.3)
    assert hook.rate_at(50, 100) == pytest.approx(0.1525)
    assert hook.rate_at(100, 100) == pytest.approx(0.005)


def _broadcast_worker(rank, world, port, result):
    import os

    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = Toy()
        hook = DynamicSparsityHook(sparsity=0.4, init='uniform', seed=rank)  # different draws per rank
        hook.setup(model)
        hook.update(1, 10)
        if rank == 1:
            torch.save(hook.masks, result)
        dist.barrier()
        if rank == 0:
            other = torch.load(result, weights_only=True)
            assert all(torch.equal(other[n], m) for n, m in hook.masks.items())
            torch.save({'ok': True}, result)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes importing the whole stack: ~10-30 s on a loaded 2-core machine
def test_masks_identical_on_every_rank(tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    result = str(tmp_path / 'masks.pth')
    mp.spawn(_broadcast_worker, args=(2, port, result), nprocs=2, join=True)
    assert torch.load(result, weights_only=True) == {'ok': True}
