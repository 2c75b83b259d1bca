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
import logging
import os
import os.path as osp
import sys

# mmrevcol first: it registers RevCol and makes mmengine's checkpoints weights-only loadable (mmrevcol/compat.py),
# which `--resume` and tools/test.py need under torch >= 2.6. Works from a checkout without `pip install -e .`.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmrevcol.checkpoint import check_model_init_cfgs  # noqa: E402
from mmrevcol.utils.cli import LiteralDictAction, run_tool  # noqa: E402

DOCS = 'docs/downstream.md'
# The run's safety lives in the configs (configs/_base_/runtime/safety.py); the tools add none of it.
SAFETY_FRAGMENT = osp.abspath(osp.join(osp.dirname(__file__), '..', 'configs', '_base_', 'runtime', 'safety.py'))
SAFETY_HOOKS = ('SafeCheckpointHook', 'NonFiniteLossHook', 'CheckpointLoadingHook')


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
# Helpers shared with tools/test.py
def load_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(pretrained_options(cfg, args.cfg_options))
    try:
        check_model_init_cfgs(cfg.model)
    except ValueError as e:
        raise SystemExit(f'ERROR: {e}')
    warn_without_safety_hooks(cfg, args.config)
    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    adapt_to_device(cfg)
    return cfg


def missing_safety_hooks(cfg: Config) -> list:
    """The hooks of ``configs/_base_/runtime/safety.py`` that the config states neither in ``default_hooks`` nor in
    ``custom_hooks``."""
    hooks = list((cfg.get('default_hooks', None) or {}).values()) + list(cfg.get('custom_hooks', None) or [])
    types = {getattr(h.get('type'), '__name__', h.get('type')) for h in hooks if isinstance(h, dict)}
    types |= {t.split('.')[-1] for t in types if isinstance(t, str)}  # 'mmrevcol.X' names X
    return [name for name in SAFETY_HOOKS if name not in types]


def warn_without_safety_hooks(cfg: Config, config: str) -> None:
    """One warning line for a config without the run's safety hooks (a user's own config); nothing is added."""
    missing = missing_safety_hooks(cfg)
    if missing:
        print_log(f'{config} does not state {", ".join(missing)}: this tool adds nothing a config does not say. '
                  f"For atomic checkpoints, the NaN stop and strict checkpoint loading add '{SAFETY_FRAGMENT}' to "
                  f'its _base_ and set default_hooks = _base_.safety_hooks ({DOCS}).', logger='current',
                  level=logging.WARNING)


def pretrained_options(cfg: Config, options: dict) -> dict:
    """``X.init_cfg.checkpoint=PATH`` where the config has ``X.init_cfg=None`` means ``Pretrained`` from PATH.

    (The demo and acceptance configs train from scratch; the README's option works on them too.)
    """
    options = dict(options)
    for key in [k for k in options if k.endswith('.init_cfg.checkpoint')]:
        parent = key[:-len('.checkpoint')]
        node = cfg
        for part in parent.split('.'):
            node = node.get(part, 'absent') if isinstance(node, (dict, Config)) else 'absent'
        if node is None and options[key] not in (None, 'None'):
            options[parent] = dict(_delete_=True, type='Pretrained', checkpoint=options.pop(key))
    return options


def _replace_norm_type(obj, old: str, new: str) -> int:
    count = 0
    if isinstance(obj, dict):
        if obj.get('type') == old:
            obj['type'] = new
            count += 1
        for value in obj.values():
            count += _replace_norm_type(value, old, new)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            count += _replace_norm_type(value, old, new)
    return count


def adapt_to_device(cfg: Config) -> None:
    """Make distributed runs work on a machine without CUDA: gloo, no DDP device_ids, BN instead of SyncBN."""
    if torch.cuda.is_available() or cfg.launcher == 'none':
        return
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(type='MMDistributedDataParallel')
    if wrapper.get('type', 'MMDistributedDataParallel') in ('MMDistributedDataParallel',
                                                            'mmengine.MMDistributedDataParallel'):
        wrapper['device_ids'] = None  # CPU modules refuse device_ids (mmengine passes [LOCAL_RANK])
    cfg.model_wrapper_cfg = wrapper
    # torch's SyncBatchNorm needs a GPU; without one, plain BN per process (mmengine also reverts SyncBN when not
    # distributed).
    replaced = _replace_norm_type(cfg.model, 'SyncBN', 'BN')
    print(f'No CUDA device: distributed backend gloo, {replaced} SyncBN -> BN', flush=True)


def pretrained_checkpoints(model_cfg) -> list:
    """``(key, checkpoint)`` of every ``init_cfg=dict(type='Pretrained', checkpoint=...)`` in the model config."""
    found = []

    def walk(obj, key):
        if isinstance(obj, dict):
            init = obj.get('init_cfg')
            inits = init if isinstance(init, (list, tuple)) else [init]
            for item in inits:
                if isinstance(item, dict) and item.get('type') == 'Pretrained' and item.get('checkpoint'):
                    found.append((f'{key}.init_cfg' if key else 'init_cfg', item['checkpoint']))
            for k, v in obj.items():
                if k != 'init_cfg':
                    walk(v, f'{key}.{k}' if key else k)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f'{key}[{i}]')

    walk(model_cfg, 'model')
    return found


def check_pretrained(cfg: Config) -> None:
    """Fail early, with the fix, when a local pretrained checkpoint named by the config is missing.

    Without this the run would build everything and then die deep inside ``init_weights`` with a bare
    FileNotFoundError. URLs (``http(s)://``, ``s3://``, ``open-mmlab://``, ...) are left to mmengine.
    """
    missing = [(key, ckpt) for key, ckpt in pretrained_checkpoints(cfg.model)
               if '://' not in str(ckpt) and not osp.isfile(ckpt)]
    if not missing:
        return
    lines = ['pretrained checkpoint(s) named by the config not found:']
    for key, ckpt in missing:
        lines.append(f'  {key}.checkpoint = {ckpt!r} (absolute: {osp.abspath(ckpt)})')
    lines += [
        'Get the official RevCol ImageNet checkpoint (e.g. revcol_tiny_1k.pth, revcol_large_22k.pth from '
        'https://github.com/megvii-research/RevCol) and put it at that path (run from the repository root), '
        f'see {DOCS}; official files load as they are (their key layout is converted on load).',
        'Or point to it:   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/revcol_xxx.pth',
        'Or train from scratch (much worse results):   --cfg-options model.backbone.init_cfg=None',
    ]
    raise SystemExit('ERROR: ' + '\n'.join(lines))


def resume_checkpoint(cfg: Config):
    """The checkpoint a run will resume from: ``load_from`` when resuming, else the latest in ``work_dir``."""
    if not cfg.get('resume', False):
        return None
    if cfg.get('load_from', None):
        return cfg.load_from
    if not osp.isdir(cfg.work_dir):
        return None
    from mmengine.runner import find_latest_checkpoint

    from mmrevcol.engine.safe_checkpoint import newest_complete_checkpoint
    # SafeCheckpointHook resumes from the newest complete checkpoint even when last_checkpoint is missing
    return find_latest_checkpoint(cfg.work_dir) or next(
        filter(None, (newest_complete_checkpoint([cfg.work_dir], t) for t in ('iter_{}.pth', 'epoch_{}.pth'))), None)


def init_cpu_dist(cfg: Config) -> None:
    """torchrun without CUDA: open the gloo process group ourselves.

    mmengine 0.10.7's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` unconditionally, which fails on a
    machine without a GPU; the Runner skips its own initialisation when a process group already exists.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    import datetime

    import torch.distributed as dist
    if dist.is_available() and not dist.is_initialized():
        timeout = cfg.env_cfg.dist_cfg.get('timeout', None)
        kwargs = dict(timeout=datetime.timedelta(seconds=timeout)) if timeout else {}
        dist.init_process_group(backend='gloo', **kwargs)


def close_dist() -> None:
    """Tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's threads are destroyed while still joinable ("terminate called without an
    active exception", SIGABRT): torchrun then reports a finished run as failed.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_runner(cfg: Config):
    init_cpu_dist(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


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


def abort_dist() -> None:
    """After a failure: tear the process group down without a barrier (another rank may be gone or stuck).

    The other ranks' next collective then fails instead of waiting, and this process exits with its error's status
    rather than gloo's abort at interpreter shutdown (see :func:`close_dist`).
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001  the error being reported matters, not this one
            pass


def train_or_exit(runner) -> None:
    """Run training; a failure (reported by ``run_tool``: one line for expected ones) first ends the process group."""
    try:
        runner.train()
    except BaseException:
        abort_dist()
        raise


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
    runner = build_runner(cfg)
    train_or_exit(runner)
    close_dist()


if __name__ == '__main__':
    sys.exit(run_tool(main))  # expected failures: one line, traceback in the run's log
