"""FLOPs and parameters of a config's model (mmengine.analysis, no fvcore needed).

Examples::

    python tools/analysis/get_flops.py configs/cascade_revcol_t_coco.py --shape 800 1344
    python tools/analysis/get_flops.py configs/upernet_revcol_t_ade20k.py --shape 512 --part model
    python tools/analysis/get_flops.py configs/upernet_revcol_t_ade20k.py --part backbone --shape 224

``--part backbone`` counts the RevCol backbone only, ``neck`` backbone + neck (``extract_feat``), ``model``
the whole network's tensor forward (``model._forward``: heads included, no post-processing). The pretrained
checkpoint is not loaded (weights don't change the count). FLOPs here are multiply-accumulates, as mmengine,
fvcore and the RevCol paper count them ("GMACs").
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from mmengine.analysis import get_model_complexity_info  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402
from torch import nn  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='FLOPs / params of a model with a RevCol backbone')
    p.add_argument('config', help='config file path')
    p.add_argument('--shape', type=int, nargs='+', default=[224, 224], help='input H W (one value: square)')
    p.add_argument('--part', choices=['backbone', 'neck', 'model'], default='backbone',
                   help='what to count (default: backbone)')
    p.add_argument('--show-table', action='store_true', help='print the per-module table')
    p.add_argument('--sparsity', type=float, default=0.,
                   help='count a sparse model (SLaK): conv/linear weights at density 1 - SPARSITY')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    return p.parse_args(argv)


class _Part(nn.Module):

    def __init__(self, model, part, shape):
        super().__init__()
        self.model = model
        self.part = part
        self.shape = shape
        # only what runs counts towards the parameters
        self.counted = {'backbone': [model.backbone],
                        'neck': [model.backbone] + ([model.neck] if getattr(model, 'neck', None) else []),
                        'model': [model]}[part]

    def forward(self, x):
        if self.part == 'backbone':
            return self.model.backbone(x)
        if self.part == 'neck':
            return self.model.extract_feat(x)
        h, w = self.shape
        scope = type(self.model).__module__.split('.')[0]
        if scope == 'mmdet':
            from mmdet.structures import DetDataSample
            meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                        scale_factor=(1., 1.))
            return self.model._forward(x, [DetDataSample(metainfo=meta)])
        if scope == 'mmpretrain':
            return self.model(x, mode='tensor')
        return self.model._forward(x)


def flops_of(cfg, shape, part='backbone', show_table=False, sparsity=0.):
    """Returns ``(flops, params)`` (ints) of ``part`` of ``cfg.model`` on a ``1x3xHxW`` input.

    ``sparsity > 0`` counts a sparse model whose 2-D/4-D weights (every conv and linear op) keep a fraction
    ``1 - sparsity``: those ops' MACs and weights are scaled by it (SLaK's published numbers)."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None
    if model_cfg.backbone.get('type') == 'SLaK':
        model_cfg.backbone.impl = 'conv'  # the counter counts convolutions; an FFT path would go uncounted
    model = MODELS.build(model_cfg)
    model.eval()
    h, w = shape
    wrapped = _Part(model, part, (h, w))
    with torch.no_grad():
        info = get_model_complexity_info(wrapped, inputs=(torch.zeros(1, 3, h, w),), show_table=show_table,
                                         show_arch=False)
    info['params'] = sum(p.numel() for m in wrapped.counted for p in m.parameters())
    if sparsity:
        from mmengine.analysis import FlopAnalyzer
        with torch.no_grad():
            ops = FlopAnalyzer(wrapped, (torch.zeros(1, 3, h, w), )).unsupported_ops_warnings(False).by_operator()
        density = 1. - sparsity
        weighted = ops.get('conv', 0) + ops.get('linear', 0)
        info['weight_flops'] = density * weighted  # the MACs of the sparse convs/linears alone (no norms, pools)
        info['flops'] -= sparsity * weighted
        info['flops_str'] = f"{info['flops'] / 1e9:.3f}G (density {density:g})"
        info['params'] = sum(p.numel() * (density if p.ndim in (2, 4) else 1.)
                             for m in wrapped.counted for p in m.parameters())
    info['params_str'] = f"{info['params'] / 1e6:.3f}M"
    return info


def main(argv=None):
    args = parse_args(argv)
    shape = args.shape * 2 if len(args.shape) == 1 else args.shape[:2]
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    info = flops_of(cfg, shape, args.part, args.show_table, args.sparsity)
    if args.show_table:
        print(info['out_table'])
    split = '=' * 40
    print(f'{split}\nConfig: {args.config}\nPart: {args.part}\nInput shape: (3, {shape[0]}, {shape[1]})\n'
          f'FLOPs (MACs): {info["flops_str"]}\nParams: {info["params_str"]}\n{split}')
    if 'weight_flops' in info:
        print(f'of which conv/linear (sparse weights): {info["weight_flops"] / 1e9:.3f}G; the rest are norms and '
              'pooling (BN in eval mode 2 ops/element, LN 5)')
    print('Counted by mmengine.analysis (multiply-accumulates); ops without a handle are skipped, so treat the '
          'number as a lower bound for heads with custom ops.')
    return info


if __name__ == '__main__':
    main()
