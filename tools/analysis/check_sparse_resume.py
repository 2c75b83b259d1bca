"""Kill/resume identity of dynamic sparse training: masks and weights of a run killed and resumed vs straight.

Three mmengine Runners on the same config (``DynamicSparsityHook`` in ``custom_hooks``), in one process:
1. ``straight``: ``--iters`` iterations;
2. ``killed``: the same, killed (an exception) right after iteration ``--kill-at``;
3. ``resumed``: ``resume=True`` in the killed run's work dir: continues from its last checkpoint
   (``--ckpt-interval``) to ``--iters``.
Prints the densities after every update and whether the final masks and weights are bitwise equal; exit 1 if not.

Example (reduced SLaK UPerNet on CamVid, a few minutes on 2 CPU cores)::

    python tools/analysis/check_sparse_resume.py configs/slak/acceptance/upernet_slak_camvid_sparse.py \\
        --iters 60 --kill-at 45 --ckpt-interval 20 --update-interval 10 --work-dir work_dirs/slak_resume
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmrevcol.engine.sparsity import DynamicSparsityHook  # noqa: E402
from mmrevcol.utils.cli import require_path, run_tool  # noqa: E402


class Killed(Exception):
    pass


class KillHook(Hook):
    priority = 'LOWEST'  # after the checkpoint hook

    def __init__(self, at: int):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise Killed(f'killed after iteration {self.at}')


class DensityLog(Hook):
    priority = 'LOW'  # after the sparsity hook

    def __init__(self):
        self.log = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        hook = next(h for h in runner.hooks if isinstance(h, DynamicSparsityHook))
        if not self.log or self.log[-1][1] != hook.num_updates:
            self.log.append((runner.iter + 1, hook.num_updates, hook.density))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--iters', type=int, default=60)
    p.add_argument('--kill-at', type=int, default=45)
    p.add_argument('--ckpt-interval', type=int, default=20)
    p.add_argument('--update-interval', type=int, default=None, help="override the hook's update_interval")
    p.add_argument('--work-dir', default='work_dirs/check_sparse_resume')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def make_cfg(args, name: str, resume: bool = False) -> Config:
    cfg = Config.fromfile(require_path(args.config, 'config'))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters, val_interval=args.iters + 1)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=args.ckpt_interval, by_epoch=False,
                                        max_keep_ckpts=-1)
    cfg.param_scheduler = [dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=args.iters)]
    for hook in cfg.custom_hooks:
        if hook['type'] == 'DynamicSparsityHook' and args.update_interval:
            hook['update_interval'] = args.update_interval
    cfg.resume = resume
    cfg.load_from = None
    return cfg


def run(cfg: Config, extra_hooks=()):
    runner = Runner.from_cfg(cfg)
    for hook in extra_hooks:
        runner.register_hook(hook)
    try:
        runner.train()
    except Killed as e:
        print(f'[{osp.basename(cfg.work_dir)}] {e}')
    return runner


def main(argv=None) -> int:
    args = parse_args(argv)
    logs = {}
    runners = {}
    for name, resume, kill in (('straight', False, None), ('resumed', False, args.kill_at), ('resumed', True, None)):
        log = DensityLog()
        hooks = [log] + ([KillHook(kill)] if kill else [])
        runners[(name, resume)] = run(make_cfg(args, name, resume), hooks)
        logs[(name, resume)] = log.log
    for key, log in logs.items():
        print(f'{key[0]}{" (after resume)" if key[1] else ""}: (iteration, updates, density) ' +
              ', '.join(f'({i}, {u}, {d:.4f})' for i, u, d in log))
    a, b = runners[('straight', False)], runners[('resumed', True)]
    ha = next(h for h in a.hooks if isinstance(h, DynamicSparsityHook))
    hb = next(h for h in b.hooks if isinstance(h, DynamicSparsityHook))
    masks_equal = ha.masks.keys() == hb.masks.keys() and all(torch.equal(ha.masks[n], hb.masks[n])
                                                            for n in ha.masks)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    diffs = {k: (sa[k].float() - sb[k].float()).abs().max().item() for k in sa if sa[k].numel()}
    weights_equal = all(torch.equal(sa[k], sb[k]) for k in sa)
    print(f'straight: {ha.num_updates} updates, density {ha.density:.4f}; resumed: {hb.num_updates} updates, '
          f'density {hb.density:.4f}')
    print(f'masks identical: {masks_equal}; weights identical: {weights_equal} '
          f'(max abs difference {max(diffs.values()):.3g})')
    return 0 if masks_equal and weights_equal else 1


if __name__ == '__main__':
    sys.exit(run_tool(main))
