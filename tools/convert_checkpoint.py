"""Convert an official RevCol checkpoint (any layout) to an mmrevcol ``RevCol`` checkpoint, optionally kernel-padded.

Checkpoints of the other families (SLaK: official classification, mmdet/mmseg) are recognised by their keys
(``mmrevcol.checkpoint.detect_layout``) and written as that backbone's checkpoint the same way.

Usage::

    python tools/convert_checkpoint.py revcol_tiny_1k.pth checkpoints/revcol_tiny_k7.pth --kernel-size 7
    python tools/convert_checkpoint.py cmr_revcol_t.pth det_load_from.pth --prefix backbone.

The output is ``{'state_dict': {<RevCol key>: tensor}, 'meta': {...}}``; it loads with
``mmengine.runner.load_checkpoint(RevCol(arch=..., kernel_size=K), DST, strict=True)`` (with ``--prefix
backbone.`` the keys are ``backbone.<RevCol key>``, for a detector's or segmentor's ``load_from``).
Exit status 1 with a one-line message on unreadable or non-RevCol input.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmrevcol.checkpoint import (DEFAULT_SEED, DEFAULT_STD, CheckpointMismatchError, atomic_save,  # noqa: E402
                                 describe_arch, detect_layout, extract_state_dict, pad_kernels, read_checkpoint,
                                 strip_prefixes, to_backbone_state_dict, to_revcol_state_dict)
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.version import __version__  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official RevCol checkpoint (classification, mmdet 2 or mmseg 0 layout)')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--kernel-size', type=int, default=None,
                        help='pad the depthwise kernels to this odd size (paper: 7 for COCO, 13 for ADE20K)')
    parser.add_argument('--std', type=float, default=DEFAULT_STD, help='std of the new kernel entries')
    parser.add_argument('--seed', type=int, default=DEFAULT_SEED, help='seed of the padding noise')
    parser.add_argument('--src-prefix', default=None,
                        help='prefix of the backbone keys in SRC (default: backbone. when such keys exist)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite DST if it exists (even SRC: the new file replaces it atomically)')
    parser.add_argument('--prefix', default='',
                        help='prefix of the written keys, e.g. backbone. for a detector/segmentor load_from')
    return parser.parse_args(argv)


def convert(src: str, dst: str, kernel_size: Optional[int] = None, std: float = DEFAULT_STD,
            seed: int = DEFAULT_SEED, prefix: str = '', src_prefix: Optional[str] = None, force: bool = False) -> dict:
    """Convert ``src`` to ``dst``; returns the meta dict written. Raises ``CheckpointMismatchError``/``ValueError``."""
    if not osp.isfile(src):
        raise CheckpointMismatchError(f'no such checkpoint file: {src}')
    if osp.exists(dst) and not force:
        same = osp.samefile(src, dst)
        raise CheckpointMismatchError(
            f'{dst} {"is the source file" if same else "exists"}: refusing to overwrite it (use --force)')
    checkpoint = read_checkpoint(src)
    layout = detect_layout(list(strip_prefixes(extract_state_dict(checkpoint), src_prefix)))
    if layout is not None and layout.name != 'RevCol':
        return convert_family(checkpoint, layout, src, dst, kernel_size, prefix, src_prefix)
    state_dict = to_revcol_state_dict(checkpoint, src_prefix)
    arch = describe_arch(state_dict)
    if arch['num_columns'] == 0 or None in arch['channels'] or 0 in arch['layers']:
        raise CheckpointMismatchError(f'{src}: incomplete RevCol weights (implied arch {arch})')
    source_kernel = arch.pop('kernel_size')
    num_padded = 0
    if kernel_size is not None:
        if not (kernel_size >= 1 and kernel_size % 2 == 1):
            raise ValueError(f'--kernel-size must be a positive odd int, got {kernel_size}')
        state_dict, num_padded = pad_kernels(state_dict, kernel_size, std, seed)
    out = OrderedDict((prefix + k, v.contiguous()) for k, v in state_dict.items())
    meta = dict(source=osp.abspath(src), arch=arch, kernel_size=kernel_size or source_kernel,
                source_kernel_size=source_kernel, padded_kernels=num_padded,
                pad_std=std if num_padded else None, pad_seed=seed if num_padded else None, prefix=prefix,
                mmrevcol_version=__version__)
    atomic_save({'state_dict': out, 'meta': meta}, dst)  # a crash never leaves a torn DST (nor touches SRC)
    return meta


def convert_family(checkpoint, layout, src: str, dst: str, kernel_size: Optional[int] = None, prefix: str = '',
                   src_prefix: Optional[str] = None) -> dict:
    """Another family's checkpoint (auto-detected ``layout``, e.g. SLaK): its backbone keys, heads dropped.

    Also converts a dict laid out like a checkpoint that holds only parameter gradients (no buffers)."""
    if kernel_size is not None:
        raise ValueError(f'--kernel-size applies to RevCol checkpoints only; {src} is a {layout.name} checkpoint')
    state_dict = to_backbone_state_dict(checkpoint, layout, src_prefix)
    out = OrderedDict((prefix + k, v.contiguous()) for k, v in state_dict.items())
    meta = dict(source=osp.abspath(src), family=layout.name,
                arch=layout.describe(state_dict) if layout.describe else None, prefix=prefix,
                mmrevcol_version=__version__)
    atomic_save({'state_dict': out, 'meta': meta}, dst)
    return meta


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        meta = convert(args.src, args.dst, args.kernel_size, args.std, args.seed, args.prefix, args.src_prefix,
                       args.force)
    except (CheckpointMismatchError, ValueError) as e:
        print(f'convert_checkpoint: error: {e}', file=sys.stderr)
        return 1
    if meta.get('family', 'RevCol') != 'RevCol':
        print(f'{args.src} -> {args.dst}: {meta["family"]} arch {meta["arch"]}')
        return 0
    pad = (f', {meta["padded_kernels"]} kernels padded {meta["source_kernel_size"]} -> {meta["kernel_size"]}'
           if meta['padded_kernels'] else '')
    print(f'{args.src} -> {args.dst}: RevCol arch {meta["arch"]}, kernel {meta["kernel_size"]}{pad}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
