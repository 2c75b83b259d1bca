"""The zoo's tools on tiny settings: compare_backbones.py (table, CSV, plot, published numbers), plot_curves.py
(val curves from mmengine logs) and get_flops.py's mmdet2 RoI convention; the CamVid acceptance configs."""
import csv
import json
import sys
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config

from conftest import SHARED, require_shared

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools' / 'analysis'))
ACCEPTANCE = ['convnext/acceptance/upernet_convnext_t_reduced_camvid.py',
              'classic/acceptance/upernet_resattnet56_reduced_camvid.py']


def test_compare_backbones_tiny(tmp_path):
    import compare_backbones
    cfgs = ['configs/classic/upernet_shufflenet_v2_ade20k.py', 'configs/classic/retinanet_shufflenet_v1_coco.py']
    rows = compare_backbones.main([*(str(REPO / c) for c in cfgs), '--size', '64', '--batch', '1', '--steps', '1',
                                   '--device', 'cpu', '--out', str(tmp_path)])
    assert [r['name'] for r in rows] == ['ShuffleNet V2 1x', 'retinanet_shufflenet_v1_coco']  # yaml name / file name
    v2, v1 = rows[0]['measured'], rows[1]['measured']
    assert v2['params_m'] == pytest.approx(1.2536, abs=1e-3)  # backbone only (no classifier)
    assert v1['params_m'] == pytest.approx(0.9047, abs=1e-3)
    assert v1['gflops'] > 0 and v2['gflops'] > 0
    assert all(m['train_s'] > 0 and m['infer_ips'] > 0 and m['train_mib'] >= 0 for m in (v2, v1))
    assert rows[0]['published']['top1'] == 69.4 and rows[1]['published'] == {}
    md = (tmp_path / 'compare.md').read_text()
    assert 'ShuffleNet V2 1x' in md and 'top-1 pub.' in md
    with open(tmp_path / 'compare.csv') as f:
        table = list(csv.DictReader(f))
    assert [r['backbone'] for r in table] == ['ShuffleNet V2 1x', 'retinanet_shufflenet_v1_coco']
    assert float(table[1]['params_m']) == pytest.approx(v1['params_m'])
    assert (tmp_path / 'compare.png').stat().st_size > 1000


def test_compare_backbones_default_list_is_the_registry():
    import compare_backbones
    registry = compare_backbones.load_registry(compare_backbones.DEFAULT_REGISTRY)
    chosen = compare_backbones.select(compare_backbones.parse_args([]), registry)
    assert 'configs/upernet_revcol_t_ade20k.py' in chosen and 'configs/convnext/upernet_convnext_t_ade20k.py' in chosen
    assert all((REPO / c).exists() for c in chosen)  # entries of other branches' families are skipped until merged


def _log(run_dir: Path, vals, losses):
    (run_dir / '20260101_000000' / 'vis_data').mkdir(parents=True)
    with open(run_dir / '20260101_000000' / 'vis_data' / 'scalars.json', 'w') as f:
        for step, loss in losses:
            f.write(json.dumps(dict(loss=loss, lr=0.1, iter=step, step=step)) + '\n')
        for step, miou in vals:
            f.write(json.dumps(dict(aAcc=50.0, mIoU=miou, step=step)) + '\n')


def test_plot_curves(tmp_path):
    import plot_curves
    _log(tmp_path / 'a', [(300, 20.0), (600, 25.5)], [(10, 2.0), (20, 1.5)])
    _log(tmp_path / 'b', [(300, 18.0), (600, 27.25)], [(10, 2.2), (20, 1.4)])
    out = tmp_path / 'plots' / 'curves.png'
    plot_curves.main([str(tmp_path / 'a'), str(tmp_path / 'b'), '--labels', 'A', 'B', '--out', str(out)])
    assert out.stat().st_size > 1000
    md = (tmp_path / 'plots' / 'curves.md').read_text()
    assert '| A | 20.00 | 25.50 |' in md and '| B | 18.00 | 27.25 |' in md
    with pytest.raises(SystemExit, match='no .bbox'):
        plot_curves.main([str(tmp_path / 'a'), '--metric', 'bbox', '--out', str(out)])


def test_get_flops_mmdet2_roi_convention():
    """Box heads counted at 1000 RoIs, mask heads at 100 (mmdet 2.x forward_dummy), exactly rescaled."""
    import get_flops
    cfg = Config.fromfile(str(REPO / 'configs' / 'demo' / 'cascade_revcol_demo.py'))
    cfg.model.test_cfg.rpn.max_per_img = 200  # the demo keeps 100: make the mask heads see more than 100
    info = get_flops.flops_of(cfg, (128, 128), 'model', roi_convention='mmdet2')
    rows = {name: (kind, n, target, counted, rescaled) for name, kind, n, target, counted, rescaled in
            info['roi_rows']}
    assert len(rows) == 6  # 3 box + 3 mask heads
    for name, (kind, n, target, counted, rescaled) in rows.items():
        assert target == {'bbox': 1000, 'mask': 100}[kind]
        assert n > 100 and rescaled == pytest.approx(counted * target / n)
    masks = sum(r[3] - r[4] for r in rows.values() if r[0] == 'mask')
    boxes = sum(r[4] - r[3] for r in rows.values() if r[0] == 'bbox')
    assert info['flops'] == pytest.approx(info['flops_forward'] - masks + boxes, rel=1e-9)


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ACCEPTANCE)
def test_acceptance_configs_keep_the_revcol_run(name):
    """Same data, schedule, optimizer and heads as configs/acceptance/upernet_revcol_camvid.py: only the backbone
    (and the heads' input widths)."""
    cfg = Config.fromfile(str(REPO / 'configs' / name))
    ref = Config.fromfile(str(REPO / 'configs' / 'acceptance' / 'upernet_revcol_camvid.py'))
    for key in ('train_dataloader', 'val_dataloader', 'train_cfg', 'param_scheduler', 'optim_wrapper',
                'default_hooks', 'val_evaluator', 'randomness'):
        assert cfg.get(key) == ref.get(key), key
    def heads(model):
        out = {k: v for k, v in model.items() if k != 'backbone'}
        for k in ('decode_head', 'auxiliary_head'):
            out[k] = {kk: vv for kk, vv in out[k].items() if kk != 'in_channels'}
        return out

    assert heads(cfg.model) == heads(ref.model)
    assert cfg.model.backbone.type != 'RevCol' and cfg.model.backbone.init_cfg is None


@pytest.mark.slow
@pytest.mark.parametrize('name', ACCEPTANCE)
def test_acceptance_configs_train_a_step(name):
    from test_configs import train_step_and_predict
    train_step_and_predict(Config.fromfile(str(REPO / 'configs' / name)))


@pytest.mark.shared
@pytest.mark.parametrize('name', ACCEPTANCE[:1])
def test_acceptance_dataset_builds(name):
    from mmengine.registry import DATASETS, init_default_scope
    root = require_shared(SHARED / 'data' / 'camvid')
    cfg = Config.fromfile(str(REPO / 'configs' / name))
    init_default_scope('mmseg')
    ds = cfg.train_dataloader.dataset
    ds.data_root = str(root)
    dataset = DATASETS.build(ds)
    assert len(dataset) == 123
    sample = dataset[0]
    assert sample['inputs'].shape[-2:] == (160, 160)


def test_compare_backbones_marks_counts_of_another_convention(tmp_path):
    """A registry entry with ``sparsity`` gets its counts measured at that sparsity too, and the notes of its
    ``conventions`` reach the table, the CSV and the plot (as for SLaK's 40 %-sparse published counts)."""
    import compare_backbones
    config = 'configs/classic/upernet_shufflenet_v2_ade20k.py'
    registry = tmp_path / 'zoo.yaml'
    registry.write_text(yaml.safe_dump([dict(name='Sparse V2', config=config, params_m=1.0, gflops=0.1,
                                             sparsity=0.5, conventions=dict(params_m='50 % sparse, with head'))]))
    rows = compare_backbones.main([str(REPO / config), '--registry', str(registry), '--size', '64', '--batch', '1',
                                   '--steps', '1', '--device', 'cpu', '--out', str(tmp_path / 'out')])
    m = rows[0]['measured']
    backbone = compare_backbones.build_backbone(Config.fromfile(str(REPO / config)), 'cpu')
    expected = sum(p.numel() * (0.5 if p.ndim in (2, 4) else 1) for p in backbone.parameters()) / 1e6
    assert m['params_sparse_m'] == pytest.approx(expected) and m['params_sparse_m'] < m['params_m']
    assert 0 < m['gflops_sparse'] < m['gflops']
    md = (tmp_path / 'out' / 'compare.md').read_text()
    assert 'params (M) sparse' in md and 'params_m: 50 % sparse, with head' in md
    with open(tmp_path / 'out' / 'compare.csv') as f:
        assert next(csv.DictReader(f))['notes'] == 'params_m: 50 % sparse, with head'
    assert compare_backbones.notes_of(rows[0]) == 'params_m: 50 % sparse, with head'
