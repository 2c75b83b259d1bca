"""FeatureStatsHook (issue #20): statistics equal a hand computation (plain and reversible), nothing counted twice,
no activation kept, and the scalars reach mmengine's visualizer every ``interval`` iterations."""
import json
import uuid
import weakref
from pathlib import Path

import pytest
import torch
from mmengine.registry import HOOKS
from torch import nn

import mmrevcol  # noqa: F401
from mmrevcol.engine import FeatureStatsHook
from mmrevcol.engine import feature_stats as fs
from mmrevcol.models import RevCol
from toy_run import make_runner

ARCH = dict(channels=[8, 16, 24, 32], layers=[1, 1, 2, 1], num_columns=3)


def hand_stats(t: torch.Tensor):
    """mean, std (Bessel), max |t| in float64: the definition the hook documents."""
    t = t.detach().double()
    return [t.mean().item(), t.std().item(), t.abs().max().item()]


def assert_stats(got: dict, kind: str, name: str, tensor: torch.Tensor, rtol: float):
    expected = hand_stats(tensor)
    scale = max(abs(v) for v in expected)
    for stat, value in zip(fs.STATS, expected):
        assert abs(got[f'{kind}_{stat}/{name}'] - value) <= rtol * scale, (kind, stat, name)


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, error', [
    (dict(interval=0), ValueError), (dict(interval=2.0), TypeError), (dict(interval=True), TypeError),
    (dict(modules='backbone.*'), TypeError), (dict(modules=[]), TypeError), (dict(grads=1), TypeError),
    (dict(stats=['var']), ValueError), (dict(stats='std'), ValueError)])
def test_arguments_are_validated(kwargs, error):
    with pytest.raises(error, match='FeatureStatsHook'):
        FeatureStatsHook(**kwargs)
    assert HOOKS.get('FeatureStatsHook') is FeatureStatsHook


def test_plain_model_matches_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), nn.Conv2d(4, 2, 3))
    x = torch.randn(2, 3, 9, 9)
    modules = fs.watched_modules(model, ['0', '2'])
    with fs.FeatureStatsCollector(modules) as collector:
        model(x).square().sum().backward()
    got = collector.results()
    # by hand: the same layers, outputs kept with their gradients
    h0 = model[0](x)
    h0.retain_grad()
    h2 = model[2](model[1](h0))
    h2.retain_grad()
    h2.square().sum().backward()
    assert len(got) == 2 * 2 * 3
    for name, h in (('0', h0), ('2', h2)):
        assert_stats(got, 'feat', name, h, 1e-6)
        assert_stats(got, 'grad', name, h.grad, 1e-6)
    # hooks are gone after the step
    assert not model[0]._forward_hooks and not model[2]._forward_hooks


def _revcol_pair():
    torch.manual_seed(0)
    plain = RevCol(arch=ARCH, reversible=False)
    plain.init_weights()
    with torch.no_grad():
        for p in plain.parameters():  # layer scale 1e-6 would hide the blocks: make every weight matter
            if p.dim() == 1 and p.numel() > 1:
                p.normal_(0, 0.5)
    reversible = RevCol(arch=ARCH, reversible=True)
    reversible.load_state_dict(plain.state_dict())
    return plain.train(), reversible.train()


def _revcol_step(model, img, weights):
    outs = model(img)
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()


@pytest.mark.parametrize('reversible', [False, True])
def test_revcol_levels_match_hand_computation_once_each(reversible, monkeypatch):
    """Every level of every column, plain and reversible: the values of a hand computation on the plain model;
    one feature and one gradient statistic per level although reversible columns run their levels twice."""
    plain, rev = _revcol_pair()
    model = rev if reversible else plain
    img = torch.randn(2, 3, 64, 64)
    weights = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(ARCH['channels'], (4, 8, 16, 32))]

    calls = []
    real = fs.tensor_stats
    monkeypatch.setattr(fs, 'tensor_stats', lambda t: calls.append(1) or real(t))
    level_calls = []
    counters = [lvl.register_forward_hook(lambda *a: level_calls.append(1)) for c in model.columns for lvl in c.levels]
    modules = fs.watched_modules(model)
    assert list(modules) == [f'col{j}.level{lv}' for j in range(3) for lv in range(4)]
    with fs.FeatureStatsCollector(modules) as collector:
        _revcol_step(model, img, weights)
    for h in counters:
        h.remove()
    got = collector.results()
    assert len(calls) == 2 * 12  # 12 feature + 12 gradient statistics, nothing twice
    # reversible: the levels of the first two columns really ran again in backward
    assert len(level_calls) == (2 * 8 + 4 if reversible else 12)

    # by hand, on the plain model with the same weights: every level's output and its gradient
    kept = {}

    def keep(name):
        def hook(module, args, out):
            out.retain_grad()
            kept[name] = out
        return hook

    handles = [lvl.register_forward_hook(keep(f'col{j}.level{lv}'))
               for j, c in enumerate(plain.columns) for lv, lvl in enumerate(c.levels)]
    plain.zero_grad()
    _revcol_step(plain, img, weights)
    for h in handles:
        h.remove()
    for name, out in kept.items():
        assert_stats(got, 'feat', name, out, 1e-5)  # reversible: float64 stream vs float32 addcmul
        assert_stats(got, 'grad', name, out.grad, 1e-4)


def _saved_bytes(model, img, weights, attach: bool):
    """Bytes autograd saves for backward over a whole step (forward and the reversible recomputation): total and
    peak alive, each storage counted once."""
    live = {}
    state = dict(peak=0, total=0)

    class Packed:
        def __init__(self, t):
            self.t, self.key = t, t.untyped_storage().data_ptr()
            if not isinstance(t, nn.Parameter):
                count, size = live.get(self.key, (0, 0))
                if count == 0:  # a new storage (its address may be a freed one's)
                    size = t.untyped_storage().nbytes()
                    state['total'] += size
                live[self.key] = (count + 1, size)
                state['peak'] = max(state['peak'], sum(s for c, s in live.values() if c))

        def __del__(self):
            if self.key in live and not isinstance(self.t, nn.Parameter):
                count, size = live[self.key]
                live[self.key] = (count - 1, size)

    collector = fs.FeatureStatsCollector(fs.watched_modules(model))
    if attach:
        collector.attach()
    outputs = []  # weak references to every level output, the recomputed ones included
    handles = [lvl.register_forward_hook(lambda m, a, out: outputs.append(weakref.ref(out)))
               for c in model.columns for lvl in c.levels]
    with torch.autograd.graph.saved_tensors_hooks(Packed, lambda p: p.t):
        _revcol_step(model, img, weights)
    for h in handles:
        h.remove()
    # the step is over and the collector still holds its results: only scalars, no level output kept alive
    assert len(outputs) == 20 and all(ref() is None for ref in outputs)
    assert all(s.numel() == 3 for s in list(collector.features.values()) + list(collector.gradients.values()))
    collector.detach()
    assert bool(collector.features) == attach
    return state


def test_no_activation_kept_in_a_reversible_run():
    _, model = _revcol_pair()
    img = torch.randn(1, 3, 64, 64)
    weights = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip(ARCH['channels'], (4, 8, 16, 32))]
    without = _saved_bytes(model, img, weights, attach=False)
    with_hook = _saved_bytes(model, img, weights, attach=True)
    assert without['peak'] > 0
    assert abs(with_hook['peak'] - without['peak']) <= 0.05 * without['peak']
    assert abs(with_hook['total'] - without['total']) <= 0.05 * without['total']


def test_grad_scale_divides_gradient_statistics():
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    results = []
    for scale in (1.0, 0.25):
        with fs.FeatureStatsCollector({'lin': lin}, grad_scale=scale) as c:
            (lin(x) * 8).sum().backward()
        results.append(c.results())
    for stat in fs.STATS:
        assert results[1][f'grad_{stat}/lin'] == pytest.approx(0.25 * results[0][f'grad_{stat}/lin'])
        assert results[1][f'feat_{stat}/lin'] == results[0][f'feat_{stat}/lin']


def test_default_modules_of_a_library_backbone():
    from mmpretrain.models import ConvNeXt

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ConvNeXt(arch=dict(depths=[1, 1, 2, 1], channels=[8, 16, 24, 32]))

    names = list(fs.watched_modules(Wrapper()))
    assert names == ['backbone.stages.0.0', 'backbone.stages.1.0', 'backbone.stages.2.0', 'backbone.stages.2.1',
                     'backbone.stages.3.0']
    with pytest.raises(ValueError, match="'backbone.nope' matches no module"):
        fs.watched_modules(Wrapper(), ['backbone.nope'])


def test_hook_writes_scalars_every_interval(tmp_path):
    """In a Runner: scalars at iterations 2 and 4 of 4 (interval 2), equal to the hand-kept tensors of those
    iterations."""
    hook = dict(type='FeatureStatsHook', interval=2, modules=['net.0', 'net.2'])
    runner = make_runner(tmp_path, max_iters=4, custom_hooks=[hook], shuffle=False,
                         visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')],
                                         name=f'feature_stats_{uuid.uuid4().hex[:8]}'))
    kept, iteration = {}, [0]

    def keep(module, args, out):  # the test's own copy of every iteration's output and its gradient
        iteration[0] += 1
        n = iteration[0]
        kept[(n, 'feat')] = out.detach().clone()
        out.register_hook(lambda g: kept.__setitem__((n, 'grad'), g.detach().clone()))

    runner.model.net[0].register_forward_hook(keep)
    runner.train()
    files = list(Path(runner.log_dir).rglob('scalars.json'))
    assert len(files) == 1
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    stats = {r['step']: r for r in records if 'feat_std/net.0' in r}
    assert sorted(stats) == [2, 4]
    for step in (2, 4):
        assert_stats(stats[step], 'feat', 'net.0', kept[(step, 'feat')], 1e-6)
        assert_stats(stats[step], 'grad', 'net.0', kept[(step, 'grad')], 1e-6)
        assert 'grad_absmax/net.2' in stats[step]


@pytest.mark.slow
@pytest.mark.shared
def test_overhead_tool_runs_on_the_camvid_acceptance_config(tmp_path, capsys):
    """The measurement the lead runs on a quiet machine, on 1 iteration: it prints both medians and the overhead
    (the numbers of a busy machine mean nothing)."""
    from conftest import SHARED, require_shared
    from mmrevcol.utils.cli import run_tool
    from tools_loader import REPO, load_tool
    camvid = require_shared(SHARED / 'data' / 'camvid')
    tool = load_tool('analysis/feature_stats_overhead')
    out = tmp_path / 'overhead.json'
    code = run_tool(tool.main, [str(REPO / 'configs/acceptance/upernet_revcol_camvid.py'), '--iters', '1',
                                '--warmup', '1', '--rounds', '1', '--intervals', '50', '--out', str(out),
                                '--cfg-options', f'train_dataloader.dataset.data_root={camvid}',
                                'train_dataloader.batch_size=2'])
    assert code == 0
    result = json.loads(out.read_text())
    assert len(result['times']['plain']) == len(result['times']['hooked']) == 1
    assert result['amortised']['50'] == pytest.approx(result['overhead_every_step'] / 50)
    assert 'amortised overhead at interval 50' in capsys.readouterr().out
