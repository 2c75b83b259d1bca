"""The cost side of HIRI-ViT's ablation (paper Table 7), measured with mmengine's counter.

Rebuilds the ablation path from one HIRI-ViT arch (default HIRI-ViT-S) with the same building blocks:

- ``mvit``: the four-stage M-ViT after rows 1-6 (Conv-stem, CFFN blocks in stages 1-2, Transformer blocks in stages
  3-4, IRDS, BN/LN as in HIRI-ViT): HIRI-ViT's stages 2-5, with each pair of HR-blocks back to one CFFN block;
- ``five_conv``: row 8, a fifth (first) stage of CFFN blocks in front, still the Conv-stem;
- ``five_hr``: row 9, the Conv-stem replaced by the HR-stem;
- ``hiri``: row 10, each CFFN block of stages 1-2 replaced by two HR-blocks: the arch itself.

Examples::

    .venv/bin/python tools/analysis/ablation_hiri_vit.py                 # table for HIRI-ViT-S
    .venv/bin/python tools/analysis/ablation_hiri_vit.py --arch b --markdown

FLOPs are multiply-accumulates ("GFLOPs" in the paper and in mmengine/fvcore), counted on a ``1x3xHxW`` input.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402

from mmrevcol.models.backbones.hiri_vit import HIRIViT  # noqa: E402
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.complexity import model_complexity  # noqa: E402

# (row of the paper's Table 7, name, input size, published GFLOPs or None)
ROWS = [
    ('6', 'mvit', 224, 4.7, 'M-ViT, 4 stages (Conv-stem, CFFN, no MHA in stages 1-2, BN, IRDS)'),
    ('7', 'mvit', 448, 21.5, '  + 448^2 input'),
    ('8', 'five_conv', 448, None, '  + five stages'),
    ('9', 'five_hr', 448, 5.1, '  + HR-stem'),
    ('10', 'hiri', 448, 5.0, '  + HR-blocks in stages 1-2 (HIRI-ViT, = S before EMA distillation)'),
]


def ablation_archs(arch='s') -> dict:
    """The arch dicts of the ablation path, derived from a five-stage HIRI-ViT arch (name or dict)."""
    hiri = HIRIViT.parse_arch(arch)
    if hiri['block_types'][:2] != ['hr', 'hr'] or len(hiri['channels']) != 5:
        raise ValueError('the ablation starts from a five-stage arch with HR-blocks in stages 1-2')
    if any(d % 2 for d in hiri['depths'][:2]):
        raise ValueError('stages 1-2 need an even number of HR-blocks (two per CFFN block of the ablation)')
    # One CFFN block for each pair of HR-blocks, with half their expansion: the pair's FFNs run on a quarter of the
    # pixels, so the CFFN has the same FFN budget on the full-resolution map.
    five_hr = dict(hiri, depths=[d // 2 for d in hiri['depths'][:2]] + hiri['depths'][2:],
                   expansions=[e / 2 for e in hiri['expansions'][:2]] + hiri['expansions'][2:],
                   block_types=['cffn', 'cffn'] + hiri['block_types'][2:])
    five_conv = dict(five_hr, stem='conv')
    keys = ('channels', 'depths', 'expansions', 'num_heads', 'sr_ratios', 'block_types')
    mvit = {k: five_conv[k][1:] for k in keys}
    mvit.update(downsamples=five_conv['downsamples'][1:], ds_expansions=five_conv['ds_expansions'][1:], stem='conv',
                stem_channels=five_conv['stem_channels'])
    return dict(mvit=mvit, five_conv=five_conv, five_hr=five_hr, hiri=hiri)


def count(arch: dict, size: int) -> tuple:
    """(GMACs, params in M) of a HIRIViT backbone (last stage) on a 1x3xsize x size input."""
    model = HIRIViT(arch=arch).eval()
    with torch.no_grad():
        info = model_complexity(model, (torch.zeros(1, 3, size, size), ))
    return info['flops'] / 1e9, sum(p.numel() for p in model.parameters()) / 1e6


def ablation_table(arch='s') -> list:
    archs = ablation_archs(arch)
    rows = []
    for row, name, size, paper, what in ROWS:
        gflops, params = count(archs[name], size)
        rows.append(dict(row=row, name=name, size=size, gflops=gflops, params=params, paper=paper, what=what))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='s', help="HIRI-ViT arch name ('s', 'b', 'l')")
    p.add_argument('--markdown', action='store_true', help='print a markdown table')
    args = p.parse_args(argv)
    rows = ablation_table(args.arch)
    if args.markdown:
        print('| Table 7 row | variant | input | GFLOPs (measured) | GFLOPs (paper) | params (M) |')
        print('|---|---|---|---|---|---|')
    for r in rows:
        paper = f"{r['paper']:.1f}" if r['paper'] else '-'
        if args.markdown:
            print(f"| {r['row']} | {r['what'].strip()} | {r['size']}^2 | {r['gflops']:.2f} | {paper} | "
                  f"{r['params']:.1f} |")
        else:
            print(f"row {r['row']:>2}  {r['what']:<72} {r['size']}^2  {r['gflops']:6.2f} G (paper {paper:>4})  "
                  f"{r['params']:5.1f} M")
    return rows


if __name__ == '__main__':
    sys.exit(run_tool(main))
