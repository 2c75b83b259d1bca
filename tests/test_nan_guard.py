"""NonFiniteLossHook (+ SafeCheckpointHook's weight check): a non-finite loss stops the run at that iteration, no
non-finite checkpoint is written, the last good one stays the newest (issue #9 row 7)."""
import math
import re

import pytest
import torch
from mmengine.hooks import Hook

import mmrevcol  # noqa: F401
from mmrevcol.demo_data import generate
from mmrevcol.engine.nan_guard import NonFiniteLossError, NonFiniteLossHook, non_finite_terms
from tools_loader import REPO, load_tool
from toy_run import make_runner


def _all_finite(path):
    ckpt = torch.load(path, weights_only=True)
    return all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())


def test_nan_loss_stops_at_that_iteration_and_keeps_last_good_checkpoint(tmp_path):
    # no shuffling, batch 2: sample 6 (NaN) is in the 4th batch
    runner = make_runner(tmp_path, 8, nan_at=6, shuffle=False, custom_hooks=[dict(type='NonFiniteLossHook')])
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 4' in message and 'loss_cls=nan' in message and 'loss_reg=nan' in message, message
    assert str(tmp_path / 'iter_3.pth') in message
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')
    assert _all_finite(tmp_path / 'iter_3.pth')


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    class Poison(Hook):  # finite loss but NaN weights, as NaN gradients would leave them
        priority = 'HIGHEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 3:
                with torch.no_grad():
                    runner.model.net[0].weight[0, 0] = float('nan')

    with pytest.raises(NonFiniteLossError, match=r'non-finite weights \(net.0.weight.*iter_3.pth not written'):
        make_runner(tmp_path, 5, custom_hooks=[Poison()]).train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth'] and _all_finite(tmp_path / 'iter_2.pth')


def test_only_loss_terms_count():
    # AMP's dynamic loss scaler skips steps with inf *gradients*; their loss is finite and passes. Non-loss
    # entries (accuracies, grad norms) are not checked.
    assert non_finite_terms({'loss': torch.tensor(1.0), 'acc': torch.tensor(float('nan'))}) == {}
    bad = non_finite_terms({'loss': torch.tensor(float('inf')), 'decode.loss_ce': 2.0})
    assert list(bad) == ['loss'] and math.isinf(bad['loss'])
    assert NonFiniteLossHook.priority == 'VERY_HIGH'  # runs before LoggerHook/CheckpointHook see the iteration


def test_train_py_lr_1e6_exits_nonzero_naming_iteration_and_terms(tmp_path, capsys):
    """The issue's reproduction: lr=1e6 on a segmentor; before, loss nan for the rest of the run, exit 0."""
    root = generate(str(tmp_path / 'data'), num_train=4, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    work = tmp_path / 'work'
    opts = ['model.backbone.arch.channels=[16,32,48,64]', 'model.backbone.arch.layers=[1,1,1,1]',
            'model.decode_head.in_channels=[16,32,48,64]', 'model.auxiliary_head.in_channels=48',
            *[f'{s}.dataset.data_root={root}' for s in ('train_dataloader', 'val_dataloader', 'test_dataloader')],
            'train_cfg.max_iters=6', 'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=1',
            'train_dataloader.batch_size=2', 'param_scheduler.0.end=1', 'optim_wrapper.optimizer.lr=1e6']
    from mmrevcol.utils.cli import run_tool
    code = run_tool(load_tool('train').main, [str(REPO / 'configs/demo/upernet_revcol_demo.py'), '--work-dir',
                                              str(work), '--cfg-options', *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 2 and err[1].startswith('(traceback in '), err
    last = err[0]
    assert last.startswith('ERROR: non-finite loss at iteration') and 'decode.loss_ce=' in last, last
    step = int(last.split('iteration ')[1].split()[0])
    saved = sorted(work.glob('iter_*.pth'))
    assert [p.name for p in saved] == [f'iter_{step - 1}.pth'] if step > 1 else saved == []
    assert all(_all_finite(p) for p in saved)
    log = ''.join(p.read_text() for p in work.glob('*/*.log'))
    assert not re.search(r'mIoU: *[0-9]', log)  # no validation of the broken weights
