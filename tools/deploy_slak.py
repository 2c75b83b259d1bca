"""Re-parameterise a SLaK checkpoint for deployment: every BN folded into its conv, the K×s, s×K and s×s kernels
of each block merged into one K×K depthwise conv with bias (``SLaK.switch_to_deploy``). The SLaK-only form of
``tools/deploy/reparameterize.py`` (which takes a config and any backbone with ``switch_to_deploy``): here the
architecture is read from the weights, so no config is needed. Both run :mod:`mmrevcol.utils.reparameterize`.

Usage::

    python tools/deploy_slak.py SLaK_tiny_checkpoint.pth slak_t_deploy.pth
    python tools/deploy_slak.py upernet_slak_t.pth slak_t_deploy.pth --prefix backbone.

SRC is any SLaK layout (official classification ``model``/``model_ema``, mmdet/mmseg ``state_dict`` with
``backbone.``, or mmrevcol); the architecture is read from its weights. The output loads strictly into
``SLaK(arch=dict(dims=..., depths=...), width_factor=1.0, kernel_size=..., deploy=True)`` (the printed arguments).
The eval-mode outputs of the original and the deployed backbone are compared on a random input; exit 1 if they
differ by more than ``--tol`` (relative).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402

from mmrevcol.checkpoint import atomic_save  # noqa: E402
from mmrevcol.utils.cli import require_path, run_tool  # noqa: E402
from mmrevcol.utils.errors import exit_code_of, expected_error_types  # noqa: E402
from mmrevcol.utils.reparameterize import deployed_checkpoint, reparameterize, slak_from_checkpoint  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--prefix', default='', help='prefix of the written keys (backbone. for a load_from)')
    p.add_argument('--src-prefix', default=None, help='prefix of the backbone keys in SRC (default: backbone. '
                   'when such keys exist)')
    p.add_argument('--use-ema', action='store_true', help='take the EMA weights of a classification checkpoint')
    p.add_argument('--size', type=int, default=128, help='input size of the check')
    p.add_argument('--tol', type=float, default=1e-4)
    return p.parse_args(argv)


def deploy(src: str, dst: str, prefix: str = '', src_prefix: Optional[str] = None, use_ema: bool = False,
           size: int = 128, tol: float = 1e-4) -> dict:
    """Write the deployed SLaK of ``src`` to ``dst``; returns the meta stored with it (``slak_args``: the
    constructor arguments it loads into)."""
    model, kwargs = slak_from_checkpoint(require_path(src, 'checkpoint'), src_prefix, use_ema)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    _, err = reparameterize(model, x, tol=tol)
    meta = dict(source=osp.abspath(src), family='SLaK', deploy=True, slak_args={**kwargs, 'deploy': True},
                check_rel_err=err, prefix=prefix)
    atomic_save(deployed_checkpoint(model, meta, prefix), dst)
    return meta


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:  # the status, also for callers of main() (run_tool does the same for the command line)
        meta = deploy(args.src, args.dst, args.prefix, args.src_prefix, args.use_ema, args.size, args.tol)
    except expected_error_types() as e:
        print(f'ERROR: {e}', file=sys.stderr)
        return exit_code_of(e)
    print(f'{args.src} -> {args.dst}: SLaK({", ".join(f"{k}={v!r}" for k, v in meta["slak_args"].items())}); '
          f'eval outputs within {meta["check_rel_err"]:.2g} (relative) of the original')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
