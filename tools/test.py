# Copyright (c) OpenMMLab / mmrevcol. Apache-2.0.
"""Test (and evaluate) a detector (mmdet config) or a segmentor (mmseg config) with a RevCol backbone.

Mirrors mmdet's and mmseg's ``tools/test.py``; the toolbox is the config's ``default_scope``.

Examples::

    python tools/test.py configs/cascade_revcol_t_coco.py work_dirs/cascade_revcol_t_coco/epoch_36.pth
    python tools/test.py configs/upernet_revcol_t_ade20k.py CKPT --tta --show-dir vis
    bash tools/dist_test.sh CONFIG CKPT 8 --out results.pkl
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from copy import deepcopy

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

from mmengine.config import ConfigDict  # noqa: E402

from mmrevcol.utils.cli import LiteralDictAction, run_tool  # noqa: E402
from mmrevcol.utils.launch import load_cfg, run_and_close  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) an mmdet/mmseg model with a RevCol backbone')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', type=str,
        help='detection: dump predictions to this .pkl file; segmentation: save the predicted label maps '
        'into this directory')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images will be saved '
                        '(under work_dir/timestamp/)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=LiteralDictAction,
        help='override settings of the config, key=value pairs; lists as key="[a,b]", dicts as '
        'key="dict(a=1,b=[2,3])", no white space (see tools/train.py --help)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def scope_of(cfg) -> str:
    scope = cfg.get('default_scope', None)
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(f"config default_scope must be 'mmdet' or 'mmseg', got {scope!r}")
    return scope


def trigger_visualization_hook(cfg, args, scope):
    cfg.setdefault('default_hooks', ConfigDict())
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:  # e.g. configs that don't inherit an mmseg schedule
        hooks['visualization'] = dict(
            type='DetVisualizationHook' if scope == 'mmdet' else 'SegVisualizationHook', interval=1)
    hook = hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def setup_det_tta(cfg):
    if 'tta_model' not in cfg:
        warnings.warn('no tta_model in the config: using DetTTAModel (nms 0.5, 100 per image)')
        cfg.tta_model = dict(type='DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('no tta_pipeline in the config: using the test pipeline with horizontal flip')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                                         'flip_direction'))]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def setup_seg_tta(cfg):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RuntimeError('--tta needs tta_model and tta_pipeline in the config (mmseg dataset bases give them)')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args)
    scope = scope_of(cfg)
    # the config's CheckpointLoadingHook (configs/_base_/runtime/safety.py) loads it in 'test' mode: every key and
    # shape must match, no half-random model is evaluated
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args, scope)
    if args.tta:
        (setup_det_tta if scope == 'mmdet' else setup_seg_tta)(cfg)
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    def test(runner):
        if args.out is not None and scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            assert args.out.endswith(('.pkl', '.pickle')), 'The dump file must be a pkl file.'
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        return runner.test()

    return run_and_close(cfg, test)


if __name__ == '__main__':
    # main returns the metrics (for callers); the process exits 0. Expected failures: one line, traceback in the log
    sys.exit(run_tool(lambda argv: [main(argv), 0][1]))
