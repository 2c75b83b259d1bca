"""FLOPs and parameters of a config's model (mmengine.analysis, no fvcore needed).

Examples::

    python tools/analysis/get_flops.py configs/cascade_revcol_t_coco.py --shape 800 1344
    python tools/analysis/get_flops.py configs/upernet_revcol_t_ade20k.py --shape 512 --part model
    python tools/analysis/get_flops.py configs/upernet_revcol_t_ade20k.py --part backbone --shape 224

``--part backbone`` counts the RevCol backbone only, ``neck`` backbone + neck (``extract_feat``), ``model``
the whole network's tensor forward (``model._forward``: heads included, no post-processing). The pretrained
checkpoint is not loaded (weights don't change the count). FLOPs here are multiply-accumulates, as mmengine,
fvcore and the RevCol paper count them ("GMACs").

RoI heads (``--part model`` of two-stage detectors): mmdet 3's ``_forward`` sends every RPN proposal (up to
``test_cfg.rpn.max_per_img`` = 1000) through the box heads AND, in ``CascadeRoIHead.forward``, through the mask
heads of all three stages. The published tables (RevCol, ConvNeXt, Swin: mmdet 2.x ``get_flops.py``,
``forward_dummy``) counted 1000 random proposals through the box heads but only the first 100 through the mask
heads (``mask_rois = rois[:100]``; 100 = ``test_cfg.rcnn.max_per_img``, the detections that get masks at test
time). At 800x1280 the difference is ~0.53 GMACs per RoI per mask head x 900 RoIs x 3 stages ~ 1.4 TMACs.
``--roi-convention mmdet2`` gives the like-for-like figure: the heads' counted FLOPs are rescaled, exactly (they are
per-RoI), from the RoIs that reached them to 1000 (box heads) and 100 (mask heads)::

    python tools/analysis/get_flops.py configs/cascade_revcol_t_coco.py --shape 800 1280 --part model \
        --roi-convention mmdet2
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402
from torch import nn  # noqa: E402

from mmrevcol.utils.cli import require_path, run_tool  # noqa: E402
from mmrevcol.utils.complexity import (flop_analyzer, format_size, model_complexity,  # noqa: E402
                                      sparse_complexity)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='FLOPs / params of a model with a RevCol backbone')
    p.add_argument('config', help='config file path')
    p.add_argument('--shape', type=int, nargs='+', default=[224, 224], help='input H W (one value: square)')
    p.add_argument('--part', choices=['backbone', 'neck', 'model'], default='backbone',
                   help='what to count (default: backbone)')
    p.add_argument('--roi-convention', choices=['forward', 'mmdet2'], default='forward',
                   help="RoI heads of two-stage detectors (--part model): 'forward' counts what mmdet 3's _forward "
                   "runs (every proposal through every head); 'mmdet2' rescales to 1000 RoIs per box head and 100 "
                   "per mask head, the convention of the published tables (default: forward)")
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


# RoIs per head in mmdet 2.x forward_dummy, which produced the published detection FLOPs
MMDET2_ROIS = {'bbox': 1000, 'mask': 100}


def _roi_heads(model):
    """``{(kind, module name): head}`` of the bbox / mask heads of a two-stage detector (empty otherwise)."""
    roi_head = getattr(model, 'roi_head', None)
    heads = {}
    for kind in ('bbox', 'mask'):
        head = getattr(roi_head, f'{kind}_head', None) if roi_head is not None else None
        if isinstance(head, nn.ModuleList):
            heads.update({(kind, f'model.roi_head.{kind}_head.{i}'): h for i, h in enumerate(head)})
        elif isinstance(head, nn.Module):
            heads[(kind, f'model.roi_head.{kind}_head')] = head
    return heads


def mmdet2_roi_flops(wrapped, by_module, counts):
    """Total FLOPs with every RoI head rescaled to the RoIs mmdet 2.x's forward_dummy sent it (per-RoI ops).

    Returns ``(flops, rows)``, rows ``(head, kind, rois counted, rois convention, flops counted, flops rescaled)``.
    """
    total = float(by_module[''])  # some handles count in 0-d tensors
    rows = []
    for (kind, name), _ in _roi_heads(wrapped.model).items():
        n = counts.get(name)
        if not n:
            continue
        target = MMDET2_ROIS[kind]
        counted = float(by_module.get(name, 0))
        rescaled = counted * target / n
        total += rescaled - counted
        rows.append((name, kind, n, target, counted, rescaled))
    return total, rows


def flops_of(cfg, shape, part='backbone', show_table=False, roi_convention='forward', sparsity=0.):
    """Returns ``(flops, params)`` (ints) of ``part`` of ``cfg.model`` on a ``1x3xHxW`` input.

    ``sparsity > 0`` counts a sparse model whose 2-D/4-D weights (every conv and linear op) keep a fraction
    ``1 - sparsity``: those ops' MACs and weights are scaled by it (SLaK's published numbers).

    With ``roi_convention='mmdet2'`` (``part='model'``) the dict also holds ``flops_forward`` (what ran) and
    ``roi_rows`` (see :func:`mmdet2_roi_flops`); ``flops`` is then the like-for-like figure.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None
    if model_cfg.backbone.get('type') == 'SLaK':
        model_cfg.backbone.impl = 'conv'  # the counter counts convolutions; an FFT path would go uncounted
    model = MODELS.build(model_cfg)
    model.eval()
    h, w = shape
    wrapped = _Part(model, part, (h, w))
    if roi_convention == 'mmdet2' and part == 'model' and _roi_heads(model):
        counts, handles = {}, []
        for (_, name), head in _roi_heads(model).items():
            handles.append(head.register_forward_pre_hook(
                lambda m, args, name=name: counts.__setitem__(name, int(args[0].shape[0]))))  # traced: a tensor
        with torch.no_grad():
            by_module = flop_analyzer(wrapped, (torch.zeros(1, 3, h, w),)).by_module()
        for handle in handles:
            handle.remove()
        flops, rows = mmdet2_roi_flops(wrapped, by_module, counts)
        info = dict(flops=int(flops), flops_forward=int(by_module['']), roi_rows=rows, flops_str=_str(flops),
                    out_table='')
    else:
        with torch.no_grad():
            info = model_complexity(wrapped, (torch.zeros(1, 3, h, w),), show_table=show_table)
    info['params'] = sum(p.numel() for m in wrapped.counted for p in m.parameters())
    if sparsity:
        sparse = sparse_complexity(wrapped, (torch.zeros(1, 3, h, w), ), sparsity, flops=info['flops'])
        info['weight_flops'] = sparse['weight_flops']  # the MACs of the sparse convs/linears alone (no norms, pools)
        info['flops'] = sparse['flops']
        info['flops_str'] = f"{info['flops'] / 1e9:.3f}G (density {1. - sparsity:g})"
        info['params'] = sum(p.numel() * ((1. - sparsity) if p.ndim in (2, 4) else 1.)
                             for m in wrapped.counted for p in m.parameters())
    info['params_str'] = f"{info['params'] / 1e6:.3f}M"
    return info


_str = format_size


def main(argv=None):
    args = parse_args(argv)
    shape = args.shape * 2 if len(args.shape) == 1 else args.shape[:2]
    cfg = Config.fromfile(require_path(args.config, 'config'))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    info = flops_of(cfg, shape, args.part, args.show_table, args.roi_convention, args.sparsity)
    if args.show_table:
        print(info['out_table'])
    split = '=' * 40
    print(f'{split}\nConfig: {args.config}\nPart: {args.part}\nInput shape: (3, {shape[0]}, {shape[1]})\n'
          f'FLOPs (MACs): {info["flops_str"]}\nParams: {info["params_str"]}\n{split}')
    if 'weight_flops' in info:
        print(f'of which conv/linear (sparse weights): {info["weight_flops"] / 1e9:.3f}G; the rest are norms and '
              'pooling (BN in eval mode 2 ops/element, LN 5)')
    if 'roi_rows' in info:
        print(f'RoI convention mmdet2 (published tables): {info["flops_str"]}; as run by mmdet 3 _forward: '
              f'{_str(info["flops_forward"])}')
        for name, kind, n, target, counted, rescaled in info['roi_rows']:
            print(f'  {name}: {n} RoIs counted -> {target}: {_str(counted)} -> {_str(rescaled)}')
    print('Counted by mmengine.analysis (multiply-accumulates); ops without a handle are skipped, so treat the '
          'number as a lower bound for heads with custom ops.')
    return info


if __name__ == '__main__':
    sys.exit(run_tool(main))
