"""The demo configs under the upstream toolboxes' ``tools/test.py --show-dir`` (mmdet 3.3.0 / mmseg 1.2.2, installed
with the toolbox under ``.mim/tools``; ``mim test`` runs them): their ``main()`` runs here unchanged. The config must
carry the visualization hook and a visualizer; the Runner is built from the config alone (no help from mmrevcol's own
tools/test.py, the config's CheckpointLoadingHook loads the checkpoint), it tests a tiny checkpoint and paints images
into the show dir."""
import importlib.util
import os.path as osp
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmrevcol.demo_data import generate

REPO = Path(__file__).resolve().parents[1]
CHANNELS = [8, 16, 24, 32]
TINY = {
    'mmdet': {'model.backbone.arch.channels': CHANNELS, 'model.backbone.arch.layers': [1, 1, 1, 1],
              'model.neck.in_channels': CHANNELS},
    'mmseg': {'model.backbone.arch.channels': CHANNELS, 'model.backbone.arch.layers': [1, 1, 1, 1],
              'model.decode_head.in_channels': CHANNELS, 'model.auxiliary_head.in_channels': CHANNELS[2]},
}


def upstream_test_main(scope: str):
    path = Path(importlib.util.find_spec(scope).origin).parent / '.mim' / 'tools' / 'test.py'
    if not path.is_file():
        pytest.skip(f'{path} not installed')
    spec = importlib.util.spec_from_file_location(f'upstream_{scope}_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize('config', ['configs/demo/cascade_revcol_demo.py', 'configs/demo/upernet_revcol_demo.py'])
def test_upstream_test_py_show_dir(config, tmp_path, monkeypatch):
    root = generate(str(tmp_path / 'data'), num_train=1, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    cfg = Config.fromfile(str(REPO / config))
    scope = cfg.default_scope
    opts = {**TINY[scope], 'test_dataloader.batch_size': 2,
            **{f'{split}.dataset.data_root': root for split in ('train_dataloader', 'val_dataloader', 'test_dataloader')},
            # (not upstream: mmengine keeps one visualizer per name, <config>_<second>, per process; another test's
            # Runner of the same config in the same second would hand this one its save_dir)
            'visualizer.name': f'upstream_show_dir_{tmp_path.name}'}
    if scope == 'mmdet':
        opts['test_evaluator.ann_file'] = opts['val_evaluator.ann_file'] = root + 'annotations/instances_val.json'
    cfg.merge_from_dict(opts)

    # a tiny checkpoint of this model, as a training run would leave it
    init_default_scope(scope)
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, ckpt)

    # upstream tools/test.py CONFIG CKPT --show-dir DIR: mmdet paints into work_dir/<timestamp>/DIR, mmseg into DIR
    show_dir = 'vis' if scope == 'mmdet' else str(tmp_path / 'vis')
    argv = [str(REPO / config), str(ckpt), '--work-dir', str(tmp_path / 'work'), '--show-dir', show_dir,
            '--cfg-options', *[f"{k}={str(v).replace(' ', '')}" for k, v in opts.items()]]
    monkeypatch.setattr(sys, 'argv', ['test.py', *argv])
    upstream_test_main(scope)()

    painted = [p for p in tmp_path.rglob('*.png') if 'vis' in p.parts]
    assert len(painted) == 2, sorted(tmp_path.rglob('*'))
    assert all(osp.getsize(p) > 0 for p in painted)
