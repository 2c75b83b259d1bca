# Copyright (c) mmrevcol. Apache-2.0.
"""Re-parameterise a trained model for deployment: ``switch_to_deploy()`` on every module that has one (RevCol: layer
scales folded, conv weights channels-last; SLaK: BN folded, the K×s + s×K + s×s kernels merged into one K×K), checked
against the original on a random input, written atomically.

Examples::

    python tools/deploy/reparameterize.py configs/slak/upernet_slak_t_ade20k.py work_dirs/.../iter_160000.pth \\
        work_dirs/deploy/upernet_slak_t_deploy.pth
    python tools/deploy/reparameterize.py configs/upernet_revcol_t_ade20k.py CKPT revcol_t_backbone_deploy.pth \\
        --part backbone --prefix backbone.
    python tools/deploy/reparameterize.py configs/demo/upernet_revcol_demo.py none work_dirs/deploy/demo.pth

``CKPT`` is a checkpoint of the whole model (``--part model``, default; loaded with the strict policy of
``tools/test.py``) or, with ``--part backbone``, any checkpoint the backbone's ``init_cfg`` accepts (official layouts
included); ``none`` converts the freshly initialised model (to check that a config re-parameterises). The check runs
``extract_feat`` (backbone + neck; the backbone alone with ``--part backbone``) on a seeded random batch before and
after, and refuses to write when the outputs differ by more than ``--tol`` relative to their scale.

The output holds ``state_dict`` and ``meta`` (source, modules switched, the check's error, how to load it); how to
build a model it loads into is printed and, where constructor arguments express it (SLaK's ``deploy=True``), written
as a config beside it (``OUT`` with ``.py``) that inherits ``CONFIG``. ``tools/deploy_slak.py SRC DST`` does the same
for a SLaK checkpoint alone (architecture read from its weights).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402

from mmrevcol.checkpoint import atomic_save, load_pretrained, prepare_model_checkpoint, read_checkpoint  # noqa: E402
from mmrevcol.utils.cli import LiteralDictAction, require_path, run_tool  # noqa: E402
from mmrevcol.utils.reparameterize import (build_model, deployed_checkpoint, loading_note,  # noqa: E402
                                           reparameterize, source_path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the config the checkpoint was trained with')
    p.add_argument('checkpoint', help="checkpoint file, or 'none' for the initialised model")
    p.add_argument('out', help='deployed checkpoint to write (a .py config is written beside it where possible)')
    p.add_argument('--part', choices=['model', 'backbone'], default='model',
                   help='convert and write the whole model (default) or its backbone only')
    p.add_argument('--prefix', default='', help="prefix of the written keys (--part backbone; 'backbone.' makes "
                   'a file for load_from of a backbone-only model)')
    p.add_argument('--shape', type=int, nargs=2, default=[128, 128], metavar=('H', 'W'), help='input of the check')
    p.add_argument('--tol', type=float, default=1e-4, help='largest relative output difference accepted')
    p.add_argument('--cfg-options', nargs='+', action=LiteralDictAction, help='override settings of the config')
    return p.parse_args(argv)


def deploy_config(cfg, out: str, cfg_options: list) -> str:
    """The config (resolved, the tool's ``--cfg-options`` included) with ``cfg_options`` set and ``load_from=out``:
    what ``tools/test.py`` runs the deployed model with. Written beside ``out`` as ``.py``."""
    from mmengine.config import DictAction
    parsed = argparse.ArgumentParser()
    parsed.add_argument('--o', nargs='+', action=DictAction)
    cfg.merge_from_dict(parsed.parse_args(['--o', *cfg_options]).o)
    cfg.load_from = osp.abspath(out)
    path = osp.splitext(out)[0] + '.py'
    cfg.dump(path)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    cfg = Config.fromfile(require_path(args.config, 'config'))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = build_model(cfg)
    ckpt = None if args.checkpoint in ('none', 'None') else require_path(args.checkpoint, 'checkpoint')
    target = model.backbone if args.part == 'backbone' else model
    if ckpt and args.part == 'backbone':
        load_pretrained(model.backbone, ckpt)
    elif ckpt:
        model.load_state_dict(prepare_model_checkpoint(model, read_checkpoint(ckpt), mode='test'), strict=True)
    forward = target if args.part == 'backbone' or not hasattr(model, 'extract_feat') else model.extract_feat
    x = torch.randn(1, 3, *args.shape, generator=torch.Generator().manual_seed(0))
    modules, err = reparameterize(target, x, forward, args.tol)
    if args.part == 'model':
        model.eval()
    note = loading_note(modules, root='model.backbone' if args.part == 'backbone' else 'model')
    meta = dict(source=source_path(args.checkpoint), config=osp.abspath(args.config), part=args.part,
                deploy=True, switched=[f'{n or "<model>"} ({type(m).__name__})' for n, m in modules],
                check_rel_err=err, loading=note['text'], cfg_options=note['cfg_options'])
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_save(deployed_checkpoint(target, meta, args.prefix if args.part == 'backbone' else ''), args.out)
    print(f'{args.checkpoint} -> {args.out}: switch_to_deploy() on {", ".join(meta["switched"])}; outputs within '
          f'{err:.2g} (relative) of the original')
    print(f'to load it: {note["text"]}')
    if note['cfg_options'] and not note['switch'] and args.part == 'model':
        print(f'config: {deploy_config(cfg, args.out, note["cfg_options"])}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
