"""The demo configs under the upstream toolboxes' ``tools/test.py --show-dir`` (mmdet 3.3.0 / mmseg 1.2.2; those
scripts are not installed, so their logic is reproduced here line for line): the config must carry the
visualization hook and a visualizer, the Runner is built from the config alone (no help from mmrevcol's own
tools/test.py), it tests a tiny checkpoint and paints images into the show dir."""
import os.path as osp
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner

from mmrevcol.demo_data import generate

REPO = Path(__file__).resolve().parents[1]
CHANNELS = [8, 16, 24, 32]
TINY = {
    'mmdet': {'model.backbone.arch.channels': CHANNELS, 'model.backbone.arch.layers': [1, 1, 1, 1],
              'model.neck.in_channels': CHANNELS},
    'mmseg': {'model.backbone.arch.channels': CHANNELS, 'model.backbone.arch.layers': [1, 1, 1, 1],
              'model.decode_head.in_channels': CHANNELS, 'model.auxiliary_head.in_channels': CHANNELS[2]},
}


def upstream_trigger_visualization_hook(cfg, show_dir):
    """mmdet's and mmseg's ``tools/test.py: trigger_visualization_hook`` with ``--show-dir``."""
    if 'visualization' not in cfg.default_hooks:
        raise RuntimeError('VisualizationHook must be included in default_hooks. refer to usage '
                           '"visualization=dict(type=\'VisualizationHook\')"')
    hook = cfg.default_hooks['visualization']
    hook['draw'] = True
    if cfg.default_scope == 'mmdet':
        hook['test_out_dir'] = show_dir
    else:
        cfg.visualizer['save_dir'] = show_dir
    return cfg


@pytest.mark.parametrize('config', ['configs/demo/cascade_revcol_demo.py', 'configs/demo/upernet_revcol_demo.py'])
def test_upstream_test_py_show_dir(config, tmp_path):
    root = generate(str(tmp_path / 'data'), num_train=1, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    cfg = Config.fromfile(str(REPO / config))
    scope = cfg.default_scope
    data = {f'{split}.dataset.data_root': root for split in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    if scope == 'mmdet':
        data['test_evaluator.ann_file'] = data['val_evaluator.ann_file'] = root + 'annotations/instances_val.json'
    cfg.merge_from_dict({**TINY[scope], **data, 'test_dataloader.batch_size': 2})

    # a tiny checkpoint of this model, as a training run would leave it
    init_default_scope(scope)
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, ckpt)

    # upstream tools/test.py main(), CONFIG CKPT --show-dir vis
    cfg.launcher = 'none'
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = str(ckpt)
    # mmdet paints into work_dir/<timestamp>/<show dir>, mmseg into <show dir> (relative to the cwd)
    show_dir = 'vis' if scope == 'mmdet' else str(tmp_path / 'vis')
    cfg = upstream_trigger_visualization_hook(cfg, show_dir)
    # (not upstream: mmengine keeps one visualizer per name, <config>_<second>, per process; another test's
    # Runner of the same config in the same second would hand this one its save_dir)
    cfg.visualizer['name'] = f'upstream_show_dir_{tmp_path.name}'
    runner = Runner.from_cfg(cfg)
    runner.test()

    painted = [p for p in tmp_path.rglob('*.png') if 'vis' in p.parts]
    assert len(painted) == 2, sorted(tmp_path.rglob('*'))
    assert all(osp.getsize(p) > 0 for p in painted)
