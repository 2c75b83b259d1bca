"""Re-parameterise a SLaK checkpoint for deployment: every BN folded into its conv, the K×s, s×K and s×s kernels
of each block merged into one K×K depthwise conv with bias (``SLaK.switch_to_deploy``).

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
from collections import OrderedDict
from typing import List, Optional

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmrevcol.checkpoint import CheckpointMismatchError, read_checkpoint, to_backbone_state_dict  # noqa: E402
from mmrevcol.checkpoint.slak import SLAK_LAYOUT, describe_arch  # noqa: E402
from mmrevcol.models.backbones.slak import SLaK  # noqa: E402


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


def build_args(arch: dict) -> dict:
    """SLaK keyword arguments for the architecture a state dict implies (widths already multiplied)."""
    out = arch['out_norms']
    return dict(arch=dict(dims=arch['dims'], depths=arch['depths']), width_factor=1.0,
                kernel_size=arch['kernel_size'], decompose=arch['decompose'], out_norm=bool(out),
                out_indices=tuple(out) if out else (0, 1, 2, 3))


def deploy(src: str, dst: str, prefix: str = '', src_prefix: Optional[str] = None, use_ema: bool = False,
           size: int = 128, tol: float = 1e-4) -> dict:
    state_dict = to_backbone_state_dict(read_checkpoint(src), SLAK_LAYOUT, src_prefix, use_ema)
    arch = describe_arch(state_dict)
    if None in arch['dims'] or 0 in arch['depths'] or arch['decompose'] is None:
        raise CheckpointMismatchError(f'{src}: incomplete or already re-parameterised SLaK weights ({arch})')
    kwargs = build_args(arch)
    model = SLaK(**kwargs)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    err = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(after, before))
    if err > tol:
        raise CheckpointMismatchError(f're-parameterised outputs differ by {err:.3g} (relative) > {tol}')
    out = OrderedDict((prefix + k, v.contiguous()) for k, v in model.state_dict().items())
    meta = dict(source=osp.abspath(src), family='SLaK', deploy=True, slak_args={**kwargs, 'deploy': True},
                check_rel_err=err, prefix=prefix)
    torch.save({'state_dict': out, 'meta': meta}, dst)
    return meta


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        meta = deploy(args.src, args.dst, args.prefix, args.src_prefix, args.use_ema, args.size, args.tol)
    except (CheckpointMismatchError, ValueError, RuntimeError) as e:
        print(f'deploy_slak: error: {e}', file=sys.stderr)
        return 1
    print(f'{args.src} -> {args.dst}: SLaK({", ".join(f"{k}={v!r}" for k, v in meta["slak_args"].items())}); '
          f'eval outputs within {meta["check_rel_err"]:.2g} (relative) of the original')
    return 0


if __name__ == '__main__':
    sys.exit(main())
