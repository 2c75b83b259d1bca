# Copyright (c) OpenMMLab / mmrevcol. Apache-2.0.
"""Train a detector (mmdet config) or a segmentor (mmseg config) with a RevCol backbone.

One script for both toolboxes: the registry scope comes from the config's ``default_scope`` (``mmdet`` or
``mmseg``, set by the inherited bases). Mirrors mmdet's ``tools/train.py``.

Examples::

    python tools/train.py configs/cascade_revcol_t_coco.py
    python tools/train.py configs/upernet_revcol_t_ade20k.py --amp --work-dir work_dirs/upernet_t
    python tools/train.py CONFIG --resume                  # auto-resume from work_dir's latest checkpoint
    python tools/train.py CONFIG --cfg-options model.backbone.init_cfg=None   # from scratch
    bash tools/dist_train.sh CONFIG 8                      # 8 processes (torchrun)
"""
import argparse
import os
import os.path as osp
import sys

# mmrevcol first: it registers RevCol and makes mmengine's checkpoints weights-only loadable (mmrevcol/compat.py),
# which `--resume` and tools/test.py need under torch >= 2.6. Works from a checkout without `pip install -e .`.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmrevcol.utils.cli import LiteralDictAction, run_tool  # noqa: E402
# The run's set-up shared with tools/test.py; the run's safety lives in the configs (configs/_base_/runtime/safety.py)
from mmrevcol.utils.launch import (check_pretrained, load_cfg, pretrained_checkpoints,  # noqa: E402
                                   resume_checkpoint, run_and_close)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an mmdet/mmseg model with a RevCol backbone')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, resume from the latest checkpoint in the work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=LiteralDictAction,
        help='override settings of the config, key=value pairs (e.g. model.backbone.init_cfg=None '
        'train_cfg.max_iters=100). Lists as key="[a,b]", nested as key="[(a,b),(c,d)]", dicts as '
        'key="dict(a=1,b=[2,3])" or key="{\'a\':1}", e.g. a custom arch: '
        'model.backbone.arch="dict(channels=[64,128,256,512],layers=[2,2,4,2],num_columns=4)".')
    parser.add_argument('--check-data', action='store_true',
                        help='before training, check every image/annotation/label map of the train and val sets as '
                        'tools/check_dataset.py does (decoded as the pipeline decodes them); stop on errors, list '
                        'warnings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank, older versions --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


# ---------------------------------------------------------------------------------------------------------------
# What happens when things go wrong (issue #9): the safety hooks and the anchor filter are stated by the configs
# (configs/_base_/runtime/safety.py, the detection recipes); the data pre-flight is an option of this tool.
def check_data_or_exit(cfg: Config) -> None:
    """``--check-data``: stop before building the runner when the train/val data has errors (warnings are listed)."""
    from mmrevcol.utils.dataset_check import check_config, format_report
    from mmrevcol.utils.errors import DataError
    problems = check_config(cfg, splits=('train', 'val'))
    print(format_report(problems), flush=True)
    errors = [p for p in problems if p.severity == 'error']
    if errors:
        raise DataError(f'{len(errors)} data error(s), listed above; fix them or drop --check-data')


# ---------------------------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args)

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper' and not torch.cuda.is_available():
        # AMP on CPU would run bf16 autocast; keep fp32 there.
        print('No CUDA device: AmpOptimWrapper -> OptimWrapper (fp32)', flush=True)
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your configuration file.')

    # resume: explicit path > auto (latest checkpoint of work_dir)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # A run that really resumes restores every weight from its checkpoint: the pretrained file is not needed.
    # `--resume` in a work dir without checkpoints starts a new run, which needs it like any other.
    if resume_checkpoint(cfg) is None:
        check_pretrained(cfg)
    elif cfg.model.get('backbone', {}).get('init_cfg') is not None and any(
            not osp.isfile(c) and '://' not in str(c) for _, c in pretrained_checkpoints(cfg.model)):
        cfg.model.backbone.init_cfg = None

    if args.check_data:
        check_data_or_exit(cfg)
    # a failure ends the process group first, then run_tool reports it (one line for expected ones)
    run_and_close(cfg, lambda runner: runner.train())


if __name__ == '__main__':
    sys.exit(run_tool(main))  # expected failures: one line, traceback in the run's log
