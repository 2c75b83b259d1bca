"""Parameters and their gradients share one memory layout, so DDP copies no gradient (issue #21).

RevCol's columns run on channels-last maps, so autograd hands their conv weights channels-last gradients; weights
stored in the default layout made DDP warn ``Grad strides do not match bucket view strides`` (depthwise weights) and
autograd copy every 2x2 down-sampling gradient, each step. The demo configs, in one process (every parameter, every
training mode of the backbone) and in a 2-process ``tools/dist_train.sh`` run (CPU, gloo).
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DATASETS, MODELS, init_default_scope

import mmrevcol  # noqa: F401
from mmrevcol.demo_data import generate
from mmrevcol.utils.memory_format import channels_last_conv_weights_

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {'seg': 'configs/demo/upernet_revcol_demo.py', 'det': 'configs/demo/cascade_revcol_demo.py'}
ARCH = dict(channels=[16, 32, 48, 64], layers=[1, 1, 1, 1], num_columns=2)
HEADS = {'seg': {'model.decode_head.in_channels': ARCH['channels'], 'model.auxiliary_head.in_channels': 48},
         'det': {'model.neck.in_channels': ARCH['channels']}}
WARNING = 'Grad strides do not match bucket view strides'


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp('data') / 'revcol_demo'), num_train=4, num_val=2, size=96,
                    verbose=False).rstrip('/') + '/'


def demo_cfg(task: str, root: str, **backbone) -> Config:
    cfg = Config.fromfile(str(REPO / CONFIGS[task]))
    cfg.merge_from_dict({'model.backbone.arch': ARCH, **HEADS[task]})
    cfg.model.backbone.update(backbone)
    cfg.train_dataloader.dataset.data_root = root
    return cfg


def incoming_grad_strides(cfg: Config) -> dict:
    """``{name: (param strides, strides of the gradient autograd delivers, default strides)}`` after one training
    step."""
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).train()
    incoming = {}
    for name, p in model.named_parameters():
        p.register_hook(lambda g, name=name: incoming.__setitem__(name, g.stride()))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    return {n: (p.stride(), incoming[n], torch.empty(p.shape).stride()) for n, p in model.named_parameters()
            if n in incoming}


@pytest.mark.parametrize('task, mode', [('seg', {}), ('det', {}), ('seg', dict(reversible=True)),
                                        pytest.param('seg', dict(with_cp=True), marks=pytest.mark.slow)],
                         ids=['seg', 'det', 'seg-reversible', 'seg-with_cp'])
def test_every_gradient_arrives_in_its_parameters_layout(task, mode, demo_root):
    strides = incoming_grad_strides(demo_cfg(task, demo_root, **mode))
    assert len(strides) > 50
    assert sum(ps != default for ps, _, default in strides.values()) >= 10, 'no weight stored channels-last'
    mismatched = {n: s[:2] for n, s in strides.items() if s[0] != s[1]}
    assert not mismatched, mismatched


def test_the_layout_is_what_removes_the_mismatch(demo_root):
    """Without channels-last weights the depthwise and down-sampling convs get gradients in another layout."""
    cfg = demo_cfg('seg', demo_root)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    weight = model.backbone.columns[0].levels[0].blocks[0].depthwise_conv.weight
    assert weight.stride() == (9, 1, 3, 1)  # (C, 1, 3, 3) channels-last; the default layout is (9, 9, 3, 1)
    plain = torch.nn.Conv2d(4, 4, 3, groups=4)
    assert plain.weight.stride() == (9, 9, 3, 1)
    assert channels_last_conv_weights_(plain) == 1 and plain.weight.stride() == (9, 1, 3, 1)


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
@pytest.mark.parametrize('task', ['seg', pytest.param('det', marks=pytest.mark.slow)])
def test_two_process_training_copies_no_gradient(task, demo_root, tmp_path):
    """``tools/dist_train.sh CONFIG 2`` (gloo on CPU), 2 iterations: DDP never warns about gradient strides."""
    from test_tools import free_port
    opts = [f'model.backbone.arch.channels={ARCH["channels"]}'.replace(' ', ''), 'model.backbone.arch.layers=[1,1,1,1]',
            'model.backbone.arch.num_columns=2'] + [f'{k}={v}'.replace(' ', '') for k, v in HEADS[task].items()]
    opts += [f'{s}.dataset.data_root={demo_root}' for s in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if task == 'det':
        opts += [f'val_evaluator.ann_file={demo_root}annotations/instances_val.json']
    opts += ['train_cfg.max_iters=2', 'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=100',
             'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}  # the warning must be able to show
    env.update(OMP_NUM_THREADS='1', OMP_WAIT_POLICY='PASSIVE', PORT=str(free_port()), MMREVCOL_QUIET='0')
    proc = subprocess.run(['bash', 'tools/dist_train.sh', CONFIGS[task], '2', '--work-dir', str(tmp_path),
                           '--cfg-options', *opts], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'Iter(train) [2/2]' in log, log[-3000:]
    assert WARNING not in log, [line for line in log.splitlines() if 'strides' in line]
