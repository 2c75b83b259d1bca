# Copyright (c) mmrevcol. Apache-2.0.
"""Export the backbone (or backbone + neck) of an mmdet / mmseg / mmpretrain model to a deployable file and check
it against eager PyTorch on a real image.

Formats:

- ``export``: ``torch.export.export`` (default, non-strict mode) with dynamic height and width, saved as ``.pt2``
  (``torch.export.load(path).module()(x)`` runs it).
- ``onnx``: the dynamo ONNX exporter (``torch.onnx.export(..., dynamo=True)``, opset 18 by default) with dynamic
  batch, height and width; checked with onnxruntime.
- ``torchscript``: ``torch.jit.trace``, saved as ``.pt`` (``torch.jit.load``). Sizes follow the input (the traced
  graph records the shape arithmetic), so it runs at other sizes too.

Examples::

    python tools/deploy/export.py configs/upernet_revcol_t_ade20k.py CKPT --format onnx --shape 512 512 \\
        --image ../shared/data/camvid/img_dir/val/0016E5_07959.jpg
    python tools/deploy/export.py configs/cascade_revcol_t_coco.py CKPT --format export --part features
    python tools/deploy/export.py configs/demo/upernet_revcol_demo.py none --format torchscript --shape 128 128

``CKPT`` ``none`` exports the freshly initialised model (e.g. to check that a config exports at all). The file is
written next to the checkpoint unless ``--out`` is given; the script prints the max absolute and relative
(``max |a - b| / max |b|``) difference of every output against eager at the exported shape and, with
``--check-shape``, at a second shape.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mmrevcol.utils.cli import InvalidInputError, require_path, run_tool  # noqa: E402
from mmrevcol.utils.reparameterize import drop_pretrained  # noqa: E402

FORMATS = {'export': '.pt2', 'onnx': '.onnx', 'torchscript': '.pt'}
DEFAULT_OPSET = 18
# Dynamic shapes: sizes of 1 are specialised by torch.export, so the exported graphs take H, W >= 64 (the stride-32
# level then has >= 2 px) and any batch size >= 2 besides the traced one; export at 1 (batch) or < 64 px needs
# --static.


class Features(nn.Module):
    """``model.extract_feat`` as a module: backbone (+ neck) features of a detector / segmentor / classifier."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.model.extract_feat(x))


class AsTuple(nn.Module):
    """Outputs as a flat tuple (ONNX and TorchScript outputs)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        out = self.module(x)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, )


# ----------------------------------------------------------------------------------------------------------------
# Export + run, one pair of functions per format. ``export_*`` write ``path`` and return a callable that runs the
# *reloaded* file, so every check is a full round trip.


def _dynamic(x: Tensor, dynamic: bool):
    """Example input and ``dynamic_shapes`` for a dynamic batch, height and width.

    ``Dim.DYNAMIC`` rather than named ``Dim``s with a range: with a batch > 1, the stride logic of elementwise ops
    on channels-last maps guards on facts like ``1 % (8 * (W // 4)) != 0``, true for every ``W >= 64`` but not
    proven by the solver, which then reports a constraint violation for a named ``Dim``.
    """
    if not dynamic:
        return x, None
    from torch.export import Dim
    if x.shape[0] == 1:  # a size-1 dim would be specialised: trace with 2
        x = torch.cat([x, x])
    return x, ({0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}, )


def export_program(module: nn.Module, x: Tensor, path: str, dynamic: bool = True) -> Callable:
    """``torch.export.export`` (non-strict: the default) with dynamic batch, H and W; saved and reloaded."""
    module = AsTuple(module).eval()
    x, dynamic_shapes = _dynamic(x, dynamic)
    with torch.no_grad():
        program = torch.export.export(module, (x, ), dynamic_shapes=dynamic_shapes)
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    return lambda t: tuple(loaded(t))


def export_onnx(module: nn.Module, x: Tensor, path: str, dynamic: bool = True,
                opset: int = DEFAULT_OPSET) -> Callable:
    """The dynamo ONNX exporter (the same ``torch.export`` graph, translated by onnxscript); run by onnxruntime."""
    module = AsTuple(module).eval()
    x, dynamic_shapes = _dynamic(x, dynamic)
    with torch.no_grad():
        program = torch.onnx.export(module, (x, ), dynamo=True, opset_version=opset, dynamic_shapes=dynamic_shapes,
                                    input_names=['input'], external_data=False, optimize=True, verify=False)
    program.save(path)
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name

    def run(t: Tensor) -> Tuple[Tensor, ...]:
        return tuple(torch.from_numpy(o) for o in session.run(None, {name: t.detach().cpu().numpy()}))

    return run


def export_torchscript(module: nn.Module, x: Tensor, path: str, dynamic: bool = True) -> Callable:
    """``torch.jit.trace``; saved and reloaded. ``dynamic`` is implied (traced shape arithmetic)."""
    import warnings
    module = AsTuple(module).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # RevCol's input-size check reads shapes as Python ints: fine, the traced graph does not need it.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        traced = torch.jit.trace(module, (x, ), check_trace=False)
    traced.save(path)
    loaded = torch.jit.load(path)
    return lambda t: tuple(loaded(t))


EXPORTERS: Dict[str, Callable] = {'export': export_program, 'onnx': export_onnx, 'torchscript': export_torchscript}


def export(module: nn.Module, x: Tensor, fmt: str, path: str, **kwargs) -> Callable:
    if fmt not in EXPORTERS:
        raise ValueError(f'format must be one of {sorted(EXPORTERS)}, got {fmt!r}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    return EXPORTERS[fmt](module, x, path, **kwargs)


def compare(eager: Sequence[Tensor], exported: Sequence[Tensor]) -> List[Tuple[float, float]]:
    """``(max |a - b|, max |a - b| / max |b|)`` per output (b: eager)."""
    if len(eager) != len(exported):
        raise AssertionError(f'{len(exported)} outputs, eager has {len(eager)}')
    diffs = []
    for a, b in zip(exported, eager):
        if tuple(a.shape) != tuple(b.shape):
            raise AssertionError(f'output shape {tuple(a.shape)} != eager {tuple(b.shape)}')
        err = (a.float() - b.float()).abs().max().item()
        diffs.append((err, err / max(b.abs().max().item(), 1e-30)))
    return diffs


# ----------------------------------------------------------------------------------------------------------------
# Model and image from a config.


def init_model(config: str, checkpoint: Optional[str], cfg_options: Optional[dict] = None) -> nn.Module:
    """The toolbox's own ``init_model`` (mmdet / mmseg / mmpretrain by ``default_scope``), on CPU, eval mode."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # No download and no missing-file error for a pretrained backbone: the checkpoint (if any) sets the weights.
    drop_pretrained(cfg.model)
    scope = cfg.get('default_scope', 'mmdet')
    ckpt = None if checkpoint in (None, 'none', 'None') else checkpoint
    if scope == 'mmdet':
        from mmdet.apis import init_detector
        model = init_detector(cfg, ckpt, device='cpu')
    elif scope == 'mmseg':
        from mmseg.apis import init_model as init_segmentor
        model = init_segmentor(cfg, ckpt, device='cpu')
    elif scope == 'mmpretrain':
        from mmpretrain.apis import get_model
        model = get_model(cfg, pretrained=ckpt or False, device='cpu')
    else:
        raise ValueError(f"config default_scope must be mmdet, mmseg or mmpretrain, got {scope!r}")
    return model.eval()


def demo_image(size: int = 256) -> np.ndarray:
    """A generated BGR image (the demo dataset's shapes) when no image file is given."""
    from mmrevcol.demo_data import make_sample
    img, _, _ = make_sample(np.random.RandomState(0), size)
    return img[..., ::-1].copy()  # make_sample draws RGB


def image_tensor(model: nn.Module, image: Optional[str], shape: Tuple[int, int]) -> Tensor:
    """Read (BGR, like the pipelines' LoadImageFromFile), resize to ``shape`` (H, W) and normalise with the
    model's data preprocessor (mean/std, BGR->RGB as configured)."""
    import mmcv
    img = demo_image() if image is None else mmcv.imread(require_path(image, 'image'))
    if img is None:
        raise InvalidInputError(f'cannot decode image {image!r}')
    h, w = shape
    img = mmcv.imresize(img, (w, h))
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()[None]
    pre = getattr(model, 'data_preprocessor', None)
    if pre is not None and getattr(pre, '_channel_conversion', False):
        x = x[:, [2, 1, 0]]
    if pre is not None and getattr(pre, '_enable_normalize', False):
        x = (x - pre.mean.view(1, -1, 1, 1)) / pre.std.view(1, -1, 1, 1)
    return x.contiguous()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint', help="checkpoint file, or 'none' for the initialised model")
    p.add_argument('--format', choices=list(FORMATS), default='onnx')
    p.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    p.add_argument('--check-shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='also compare against eager at this second shape (exercises the dynamic H/W)')
    p.add_argument('--part', choices=['backbone', 'features'], default='backbone',
                   help='backbone, or features = model.extract_feat (backbone + neck)')
    p.add_argument('--image', default=None, help='image to compare on (default: a generated demo image)')
    p.add_argument('--out', default=None, help='output file (default: next to the checkpoint / in work_dirs/)')
    p.add_argument('--static', action='store_true', help='export with a fixed input shape')
    p.add_argument('--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset (>= 17)')
    p.add_argument('--cfg-options', nargs='+', default=None, help='key=value config overrides')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    require_path(args.config, 'config')
    if args.checkpoint not in ('none', 'None'):
        require_path(args.checkpoint, 'checkpoint', "or 'none' for the freshly initialised model")
    if args.image is not None:
        require_path(args.image, 'image')
    from mmengine.config import DictAction
    cfg_options = None
    if args.cfg_options:
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest='o')(None, ns, args.cfg_options)
        cfg_options = ns.o
    model = init_model(args.config, args.checkpoint, cfg_options)
    backbone = getattr(model, 'backbone', None)
    if hasattr(backbone, 'switch_to_deploy'):  # RevCol, RepVGG-style backbones: fold for inference
        backbone.switch_to_deploy()
    module = backbone if args.part == 'backbone' else Features(model)
    module.eval()
    x = image_tensor(model, args.image, tuple(args.shape))

    out = args.out
    if out is None:
        stem = osp.splitext(osp.basename(args.config))[0] + f'_{args.part}'
        folder = (osp.dirname(osp.abspath(args.checkpoint)) if args.checkpoint not in ('none', 'None')
                  else osp.join('work_dirs', 'deploy'))
        out = osp.join(folder, stem + FORMATS[args.format])
    kwargs = dict(dynamic=not args.static)
    if args.format == 'onnx':
        if args.opset < 17:
            raise SystemExit('--opset must be >= 17 (LayerNormalization)')
        kwargs['opset'] = args.opset
    run = export(module, x, args.format, out, **kwargs)
    print(f'{args.format}: wrote {out} ({osp.getsize(out) / 2**20:.1f} MiB)')

    checks = [tuple(args.shape)] + ([tuple(args.check_shape)] if args.check_shape else [])
    worst = 0.
    for shape in checks:
        t = image_tensor(model, args.image, shape)
        with torch.no_grad():
            eager = AsTuple(module)(t)
        diffs = compare(eager, run(t))
        for i, ((abs_err, rel), o) in enumerate(zip(diffs, eager)):
            print(f'  input {shape[0]}x{shape[1]}  output {i} {tuple(o.shape)}: max |diff| {abs_err:.3e}  '
                  f'relative {rel:.3e}')
            worst = max(worst, rel)
    print(f'max relative difference vs eager: {worst:.3e}')
    return worst


if __name__ == '__main__':
    sys.exit(run_tool(main))
