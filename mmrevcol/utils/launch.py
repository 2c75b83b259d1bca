"""What ``tools/train.py`` and ``tools/test.py`` share: load a config with its command-line options and pre-flight
checks, adapt a distributed run to a machine without CUDA, build the Runner, open and close the process group.

The run itself is the config's: nothing here adds a hook or changes a pipeline. The only changes are CPU-only
conveniences, each printed (gloo, SyncBN -> BN without a GPU).
"""
import logging
import os.path as osp
from typing import Callable, List, Optional, TypeVar

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..checkpoint import check_model_init_cfgs
from .cli import require_path
from .errors import ExpectedError

DOCS = 'docs/downstream.md'
_PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: the run's safety (configs/_base_/runtime/safety.py): in a checkout, or where mim installs the configs
SAFETY_FRAGMENT = next((p for p in (osp.join(osp.dirname(_PACKAGE), 'configs', '_base_', 'runtime', 'safety.py'),
                                    osp.join(_PACKAGE, '.mim', 'configs', '_base_', 'runtime', 'safety.py'))
                        if osp.isfile(p)), None)


class InvalidConfigError(ExpectedError):
    """A config that cannot describe a run (e.g. an unknown initializer type)."""


def load_cfg(args) -> Config:
    """The config of ``args.config`` with ``args.cfg_options`` merged, checked before anything is built, its
    ``work_dir`` (``args.work_dir`` > the config's > ``./work_dirs/<config name>``) and ``launcher`` set."""
    cfg = Config.fromfile(require_path(args.config, 'config file'))
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(pretrained_options(cfg, args.cfg_options))
    try:
        check_model_init_cfgs(cfg.model)
    except ValueError as e:
        raise InvalidConfigError(str(e)) from None
    warn_without_safety_hooks(cfg, args.config)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    adapt_to_device(cfg)
    return cfg


def safety_hook_types() -> List[str]:
    """The hook types of the runtime safety fragment, in its order."""
    if SAFETY_FRAGMENT is None:
        return ['SafeCheckpointHook', 'NonFiniteLossHook', 'CheckpointLoadingHook']
    return [hook['type'] for hook in Config.fromfile(SAFETY_FRAGMENT).safety_hooks.values()]


def missing_safety_hooks(cfg: Config) -> List[str]:
    """The hooks of the safety fragment that the config states neither in ``default_hooks`` nor in
    ``custom_hooks``."""
    hooks = list((cfg.get('default_hooks', None) or {}).values()) + list(cfg.get('custom_hooks', None) or [])
    types = {getattr(h.get('type'), '__name__', h.get('type')) for h in hooks if isinstance(h, dict)}
    types |= {t.split('.')[-1] for t in types if isinstance(t, str)}  # 'mmrevcol.X' names X
    return [name for name in safety_hook_types() if name not in types]


def warn_without_safety_hooks(cfg: Config, config: str) -> None:
    """One warning line for a config without the run's safety hooks (a user's own config); nothing is added."""
    missing = missing_safety_hooks(cfg)
    if missing:
        print_log(f'{config} does not state {", ".join(missing)}: the tools add nothing a config does not say. For '
                  'atomic checkpoints, the NaN stop, strict checkpoint loading, preemption and the work-dir lock add '
                  f"'{SAFETY_FRAGMENT or 'configs/_base_/runtime/safety.py'}' to its _base_ and set "
                  f'default_hooks = _base_.safety_hooks ({DOCS}).', logger='current', level=logging.WARNING)


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


def resume_checkpoint(cfg: Config) -> Optional[str]:
    """The checkpoint a run will resume from: ``load_from`` when resuming, else the latest in ``work_dir``."""
    if not cfg.get('resume', False):
        return None
    if cfg.get('load_from', None):
        return cfg.load_from
    if not osp.isdir(cfg.work_dir):
        return None
    from mmengine.runner import find_latest_checkpoint

    from ..engine.checkpoint_discovery import newest_complete_checkpoint
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
    active exception", SIGABRT): torchrun then reports a finished run as failed. A DDP wrapper's reducer holds the
    process group too, and the runner sits in reference cycles, so :func:`run_and_close` drops its runner first and
    the collection here frees the group's last holder while the interpreter is whole (with the runner kept alive, the
    abort ended one of 17 successful 2-process demo runs on this 2-core machine).
    """
    import gc

    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


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


def build_runner(cfg: Config):
    init_cpu_dist(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


T = TypeVar('T')


def run_and_close(cfg: Config, action: Callable[[Runner], T]) -> T:
    """Build the runner, run ``action(runner)`` (its ``train`` or ``test``) and end the process group either way.

    A failure ends it without a barrier (:func:`abort_dist`) and is re-raised for ``run_tool`` to report; success
    drops the runner, whose DDP wrapper holds the group, before :func:`close_dist`. The runner lives only here, so
    no caller can keep it alive past the group.
    """
    runner = build_runner(cfg)
    try:
        result = action(runner)
    except BaseException:
        abort_dist()
        raise
    del runner
    close_dist()
    return result
