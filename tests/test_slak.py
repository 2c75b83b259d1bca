"""SLaK backbone: official reference vectors (forward, input and parameter gradients, re-parameterised forward),
official checkpoint layouts, arch options, layer depths, and the published parameter/FLOP counts."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import nn

import mmrevcol  # noqa: F401
from mmrevcol.checkpoint import CheckpointMismatchError, detect_layout
from mmrevcol.models.backbones.slak import SLaK

from conftest import SHARED, require_shared

REFERENCE = SHARED / 'reference' / 'slak_official_tiny.pth'
TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'convert_checkpoint.py'
TINY = dict(dims=[16, 32, 48, 64], depths=[1, 1, 2, 1])


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------------------------------------------
# The official classification model, written out from VITA-Group/SLaK models/SLaK.py (module names, order and
# init as there; the CUDA-only large-kernel extension replaced by what it computes), to make more references.
class OfficialLN(nn.Module):

    def __init__(self, c, channels_first):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.channels_first = channels_first

    def forward(self, x):
        if not self.channels_first:
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, 1e-6)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class OfficialConvBN(nn.Sequential):

    def __init__(self, c, kernel):
        super().__init__()
        self.add_module('conv', nn.Conv2d(c, c, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=c,
                                          bias=False))
        self.add_module('bn', nn.BatchNorm2d(c))


class OfficialLK(nn.Module):

    def __init__(self, c, k, s, decom):
        super().__init__()
        self.decom = decom
        if decom:
            self.LoRA1, self.LoRA2 = OfficialConvBN(c, (k, s)), OfficialConvBN(c, (s, k))
        else:
            self.lkb_origin = OfficialConvBN(c, (k, k))
        if s < k:
            self.small_conv = OfficialConvBN(c, (s, s))

    def forward(self, x):
        out = self.LoRA1(x) + self.LoRA2(x) if self.decom else self.lkb_origin(x)
        return out + self.small_conv(x) if hasattr(self, 'small_conv') else out


class OfficialBlock(nn.Module):

    def __init__(self, c, k, s, decom):
        super().__init__()
        self.large_kernel = OfficialLK(c, k, s, decom)
        self.norm = OfficialLN(c, False)
        self.pwconv1, self.pwconv2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.ones(c))

    def forward(self, x):
        y = self.large_kernel(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class OfficialSLaK(nn.Module):

    def __init__(self, dims, depths, kernel_size, width_factor, decom, num_classes=10):
        super().__init__()
        dims = [int(d * width_factor) for d in dims]
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), OfficialLN(dims[0], True))] + [
                nn.Sequential(OfficialLN(dims[i - 1], True), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
                for i in range(1, 4)])
        self.stages = nn.ModuleList([
            nn.Sequential(*[OfficialBlock(dims[i], kernel_size[i], kernel_size[4], decom) for _ in range(depths[i])])
            for i in range(4)])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        outs = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            outs.append(x)
        return outs, self.head(self.norm(x.mean([-2, -1])))


def randomize(model, seed, sparsity=0.4):
    """Every weight matters: random values, BN statistics, layer scale ~N(0.5, 0.1); ~40% zero depthwise taps."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith('gamma'):
                t.copy_(0.5 + 0.1 * torch.randn(t.shape, generator=gen))
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * (0.5 if t.ndim == 1 else 1 / math.sqrt(t[0].numel())))
            if t.ndim == 4 and t.shape[1] == 1:
                t.mul_(torch.rand(t.shape, generator=gen) >= sparsity)
    return model


def official_loss(stage_outputs, logits):
    """The reference README's loss."""
    loss = sum((s * torch.linspace(0.5, 1.5, s.numel()).view_as(s)).mean() for s in stage_outputs)
    return loss + (logits ** 2).mean()


def reference_case(model, x):
    x = x.clone().requires_grad_(True)
    stages, logits = model(x)
    official_loss(stages, logits).backward()
    return dict(input=x.detach(), stage_outputs=[s.detach() for s in stages], input_grad=x.grad,
                param_grads={n: p.grad for n, p in model.named_parameters()})


# ----------------------------------------------------------------------------------------------------------------
def convert_file(tmp_path, name, payload, prefix=''):
    src, dst = tmp_path / f'{name}_official.pth', tmp_path / f'{name}.pth'
    torch.save(payload, src)
    assert tool.main([str(src), str(dst)] + (['--prefix', prefix] if prefix else [])) == 0
    return dst


def check_against_reference(tmp_path, checkpoint, ref, config, tol=1e-4, impl='auto'):
    """The issue's acceptance: convert -> load_checkpoint(strict=True) into SLaK built in the mmdet scope; eval
    outputs, input grad and every parameter grad (converted by the same tool) within ``tol``; again after deploy."""
    weights = convert_file(tmp_path, 'ckpt', checkpoint)
    grads_file = convert_file(tmp_path, 'grads', {'model': ref['param_grads']})
    init_default_scope('mmdet')
    model = MODELS.build(dict(type='SLaK', arch=dict(dims=config['dims'], depths=config['depths']),
                              kernel_size=config['kernel_size'], width_factor=config['width_factor'],
                              decompose=config.get('Decom', True), out_indices=(0, 1, 2, 3), out_norm=False,
                              impl=impl))
    load_checkpoint(model, str(weights), strict=True)
    model.eval()
    official = checkpoint['model']
    x = ref['input'].clone().requires_grad_(True)
    stages = model(x)
    for out, expected in zip(stages, ref['stage_outputs']):
        assert out.shape == expected.shape and out.is_contiguous()
        assert rel_err(out, expected) < tol
    logits = F.linear(F.layer_norm(stages[-1].mean([-2, -1]), stages[-1].shape[1:2], official['norm.weight'],
                                   official['norm.bias'], 1e-6), official['head.weight'], official['head.bias'])
    official_loss(stages, logits).backward()
    assert rel_err(x.grad, ref['input_grad']) < tol
    grads = torch.load(grads_file, weights_only=True)['state_dict']
    params = dict(model.named_parameters())
    assert set(grads) == set(params), 'the converted gradient dict must cover exactly the backbone parameters'
    for name, p in params.items():
        assert rel_err(p.grad, grads[name]) < tol, name
    model.switch_to_deploy()
    with torch.no_grad():
        for out, expected in zip(model(ref['input']), ref['stage_outputs']):
            assert rel_err(out, expected) < tol
    return model


@pytest.mark.shared
def test_official_reference_vectors(tmp_path):
    ref = torch.load(require_shared(REFERENCE), weights_only=True)
    assert detect_layout(list(ref['checkpoint']['model'])).name == 'SLaK'
    check_against_reference(tmp_path, ref['checkpoint'], ref, ref['config'])


CASES = [  # other widths, width factors, kernels, input sizes, the non-decomposed form
    dict(dims=[8, 16, 24, 32], depths=[1, 2, 1, 1], kernel_size=[15, 13, 11, 5, 3], width_factor=1.3, Decom=True,
         size=(48, 60)),
    dict(dims=[12, 20, 28, 36], depths=[1, 1, 1, 1], kernel_size=[9, 7, 7, 3, 5], width_factor=1.0, Decom=True,
         size=(33, 41)),
    dict(dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], kernel_size=[11, 9, 7, 5, 3], width_factor=1.5, Decom=False,
         size=(40, 40)),
]


@pytest.mark.parametrize('case', CASES, ids=['w1.3', 'k5-small', 'not-decomposed'])
def test_official_model_written_out(tmp_path, case):
    official = randomize(OfficialSLaK(case['dims'], case['depths'], case['kernel_size'], case['width_factor'],
                                      case['Decom']), seed=3).eval()
    x = torch.randn(2, 3, *case['size'], generator=torch.Generator().manual_seed(0))
    ref = reference_case(official, x)
    check_against_reference(tmp_path, {'model': official.state_dict(), 'epoch': 299}, ref, case)


@pytest.mark.shared
def test_reference_layout_self_check():
    """The written-out official model reproduces the shared reference (so the generated cases above are faithful)."""
    ref = torch.load(require_shared(REFERENCE), weights_only=True)
    cfg = ref['config']
    official = OfficialSLaK(cfg['dims'], cfg['depths'], cfg['kernel_size'], cfg['width_factor'], True)
    official.load_state_dict(ref['checkpoint']['model'], strict=True)
    mine = reference_case(official.eval(), ref['input'])
    for a, b in zip(mine['stage_outputs'], ref['stage_outputs']):
        assert rel_err(a, b) < 1e-5


# ----------------------------------------------------------------------------------------------------------------
def write_det_checkpoint(path, seed=0, out_indices=(0, 1, 2, 3)):
    """mmdet 2 / mmseg 0 layout: state_dict, backbone. prefix, LoRA names, norm{i}, plus neck/head keys."""
    official = randomize(OfficialSLaK(TINY['dims'], TINY['depths'], [9, 7, 7, 5, 3], 1.0, True), seed)
    sd = {f'backbone.{k}': v for k, v in official.state_dict().items() if not k.startswith(('norm.', 'head.'))}
    for i in out_indices:
        c = official.stages[i][0].pwconv2.out_features
        sd[f'backbone.norm{i}.weight'], sd[f'backbone.norm{i}.bias'] = torch.rand(c) + 0.5, torch.randn(c)
    sd['decode_head.conv_seg.weight'] = torch.randn(3, 8, 1, 1)
    torch.save({'state_dict': sd, 'meta': {}}, path)
    return official, sd


def test_init_cfg_detection_layout_with_out_norms(tmp_path):
    path = tmp_path / 'upernet_slak.pth'
    official, sd = write_det_checkpoint(path)
    model = SLaK(arch=TINY, kernel_size=[9, 7, 7, 5, 3], width_factor=1.0,
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.norm2.weight, sd['backbone.norm2.weight'])
    assert torch.equal(model.stages[2][1].depthwise_conv.tall.conv.weight,
                       sd['backbone.stages.2.1.large_kernel.LoRA1.conv.weight'])
    assert torch.equal(model.stages[0][0].pointwise_conv1.weight, sd['backbone.stages.0.0.pwconv1.weight'])
    # out_norm=False: the task's output norms are dropped, the rest loads strictly
    raw = SLaK(arch=TINY, kernel_size=[9, 7, 7, 5, 3], width_factor=1.0, out_norm=False,
               init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    raw.init_weights()
    official.eval(), raw.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(raw(x), official(x)[0]):
            assert rel_err(a, b) < 1e-5


def test_classification_checkpoint_into_detection_backbone_keeps_initial_out_norms(tmp_path):
    official = randomize(OfficialSLaK(TINY['dims'], TINY['depths'], [9, 7, 7, 5, 3], 1.0, True), 0)
    path = tmp_path / 'slak_cls.pth'
    torch.save({'model': official.state_dict(), 'model_ema': official.state_dict(), 'epoch': 1}, path)
    model = SLaK(arch=TINY, kernel_size=[9, 7, 7, 5, 3], width_factor=1.0, out_indices=(1, 3),
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.norm3.weight, torch.ones(64)) and not hasattr(model, 'norm0')
    assert torch.equal(model.downsample_layers[0][0].weight, official.downsample_layers[0][0].weight)


def test_mismatched_checkpoint_names_the_difference(tmp_path):
    path = tmp_path / 'det.pth'
    write_det_checkpoint(path)
    wrong = SLaK(arch=TINY, kernel_size=[11, 7, 7, 5, 3], width_factor=1.0,
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*stages\.0\.0\.depthwise_conv\.tall'):
        wrong.init_weights()
    with pytest.raises(CheckpointMismatchError, match='kernel_size'):
        wrong.init_weights()
    revcol_like = tmp_path / 'other.pth'
    torch.save({'model': {'stem.0.weight': torch.zeros(1)}}, revcol_like)
    with pytest.raises(CheckpointMismatchError, match='no SLaK weights'):
        SLaK(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(revcol_like))).init_weights()


def test_converter_prefix_and_kernel_size_error(tmp_path, capsys):
    path = tmp_path / 'det.pth'
    write_det_checkpoint(path)
    out = tmp_path / 'load_from.pth'
    assert tool.main([str(path), str(out), '--prefix', 'backbone.']) == 0
    sd = torch.load(out, weights_only=True)
    assert sd['meta']['family'] == 'SLaK' and sd['meta']['arch']['kernel_size'] == [9, 7, 7, 5, 3]
    assert all(k.startswith('backbone.') for k in sd['state_dict'])
    assert not any('decode_head' in k or 'LoRA' in k for k in sd['state_dict'])
    assert tool.main([str(path), str(out), '--kernel-size', '7', '--force']) == 1
    assert 'RevCol checkpoints only' in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('size', [(64, 64), (37, 53), (32, 35)])
def test_any_input_size_and_nchw(size):
    model = SLaK(arch=TINY, kernel_size=[13, 11, 9, 7, 3], width_factor=1.3).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = size[0] // 4, size[1] // 4
    for i, o in enumerate(outs):
        assert o.shape == (1, int(TINY['dims'][i] * 1.3), h, w) and o.is_contiguous()
        h, w = h // 2, w // 2


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match='at least 32'):
        SLaK(arch=TINY)(torch.randn(1, 3, 31, 64))


def test_named_archs_and_errors():
    for name, dims, depths in (('tiny', [124, 249, 499, 998], [3, 3, 9, 3]), ('s', [124, 249, 499, 998],
                                                                           [3, 3, 27, 3]),
                               ('base', [166, 332, 665, 1331], [3, 3, 27, 3])):
        model = SLaK(arch=name, out_indices=(3, ))
        assert model.dims == dims and model.depths == depths
        assert model.stages[0][0].depthwise_conv.tall.conv.weight.shape == (124 if name != 'base' else 166, 1, 51, 5)
        assert model.stages[3][0].depthwise_conv.wide.conv.weight.shape[-2:] == (5, 13)
        del model
    with pytest.raises(ValueError, match='arch'):
        SLaK(arch='huge')
    with pytest.raises(ValueError, match='kernel_size'):
        SLaK(arch=TINY, kernel_size=[51, 49, 47, 13])
    with pytest.raises(ValueError, match='kernel_size'):
        SLaK(arch=TINY, kernel_size=[51, 49, 47, 12, 5])
    with pytest.raises(ValueError, match='out_indices'):
        SLaK(arch=TINY, out_indices=(4, ))


def test_out_indices_out_norm_frozen_stages_norm_eval():
    model = SLaK(arch=TINY, kernel_size=[7, 7, 5, 5, 3], width_factor=1.0, out_indices=(1, -1), frozen_stages=2,
                 norm_eval=True)
    names = {n.split('.')[0] for n, _ in model.named_parameters()}
    assert {'norm1', 'norm3'} <= names and 'norm0' not in names
    model.train()
    for i in range(2):
        assert not any(p.requires_grad for p in model.stages[i].parameters())
        assert not any(p.requires_grad for p in model.downsample_layers[i].parameters())
        assert not model.stages[i].training
    assert all(p.requires_grad for p in model.stages[2].parameters()) and model.stages[2].training
    assert not model.stages[2][0].depthwise_conv.tall.bn.training  # norm_eval
    outs = model(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 64]
    no_norm = SLaK(arch=TINY, out_norm=False)
    assert not any(n.startswith('norm') for n, _ in no_norm.named_parameters())


def test_syncbn_config_and_drop_path_train_step():
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(SLaK(arch=TINY, kernel_size=[7, 7, 5, 5, 3], norm_cfg=dict(type='SyncBN'),
                                       drop_path_rate=0.2, layer_scale_init_value=1.0))
    model.init_weights()
    model.train()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.stages[3][0].drop_path.drop_prob == pytest.approx(0.2)


def test_bf16_autocast_and_with_cp():
    model = SLaK(arch=TINY, kernel_size=[9, 7, 5, 5, 3], impl='fft', with_cp=True).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 32, 32))
    sum(o.float().square().mean() for o in outs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_deployed_checkpoint_loads_into_deploy_model(tmp_path):
    torch.manual_seed(0)
    model = randomize(SLaK(arch=TINY, kernel_size=[9, 7, 5, 5, 3]), seed=1).eval()
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
    assert not any('.bn.' in k for k in model.state_dict())
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'deploy.pth')
    deployed = SLaK(arch=TINY, kernel_size=[9, 7, 5, 5, 3], deploy=True).eval()
    load_checkpoint(deployed, str(tmp_path / 'deploy.pth'), strict=True)
    with torch.no_grad():
        for a, b in zip(deployed(x), ref):
            assert rel_err(a, b) < 1e-4


def test_layer_depth_stage_wise_matches_mmseg_constructor():
    """The official ConvNeXt/SLaK stage-wise rule, as mmseg 1.x implements it for backbones named ConvNeXt."""
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor

    class ConvNeXtSLaK(SLaK):  # mmseg dispatches on the class name
        pass

    class Seg(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = ConvNeXtSLaK(arch=TINY, kernel_size=[7, 7, 5, 5, 3])
            self.decode_head = nn.Linear(4, 4)

    model = Seg()
    ctor = LearningRateDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
    wrapper = ctor(model)
    official = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            official[id(p)] = group['lr_scale']
    for name, p in model.named_parameters():
        layer_id, num = model.backbone.get_layer_depth(name, 'backbone.', 'stage_wise')
        assert 0.9 ** (num - layer_id - 1) == pytest.approx(official[id(p)]), name
    ids = {model.backbone.get_layer_depth(n, 'backbone.', 'stage_wise')[0] for n, _ in model.named_parameters()}
    assert ids == {0, 1, 2, 3, 4, 7}  # 6 ids in use
    assert model.backbone.get_layer_depth('backbone.stages.2.1.gamma', 'backbone.')[0] == 3  # layer-wise


# ----------------------------------------------------------------------------------------------------------------
PUBLISHED = {'tiny': (30e6, 5.0e9), 'small': (55e6, 9.8e9), 'base': (95e6, 17.1e9)}


@pytest.mark.slow
@pytest.mark.parametrize('arch', sorted(PUBLISHED))
def test_published_params_and_flops(arch):
    """Backbone + 1000-class head at 224², through tools/analysis/get_flops.py (mmengine's counter), counted at
    the published 40% sparsity (the published numbers are the sparse model's: dense SLaK-T is 50.7M / 8.7G).
    The conv/linear MACs (what sparsity scales) match within 5%; the total adds the norms (+0.7% for T)."""
    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location('get_flops', TOOL.parent / 'analysis' / 'get_flops.py')
    get_flops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(get_flops)
    cfg = Config.fromfile(str(TOOL.parents[1] / 'configs' / 'slak' / 'slak_t_in1k.py'))
    cfg.model.backbone.arch = arch
    cfg.model.head.in_channels = int(SLaK.arch_settings[arch]['dims'][-1] * 1.3)
    info = get_flops.flops_of(cfg, (224, 224), 'model', sparsity=0.4)
    want_params, want_flops = PUBLISHED[arch]
    assert abs(info['params'] / want_params - 1) < 0.05, info['params']
    assert abs(info['weight_flops'] / want_flops - 1) < 0.05, info['weight_flops']
    assert abs(info['flops'] / want_flops - 1) < 0.06, info['flops']


def test_generic_layer_decay_constructor_gives_official_stage_wise_scales():
    from mmengine.optim import build_optim_wrapper

    class Seg(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = SLaK(arch=TINY, kernel_size=[7, 7, 5, 5, 3])
            self.decode_head = nn.Linear(4, 4)

    model = Seg()
    cfg = dict(type='OptimWrapper', constructor='BackboneLayerDecayOptimizerConstructor',
               optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
               paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
    wrapper = build_optim_wrapper(model, cfg)
    scale = {id(p): (g['lr_scale'], g['weight_decay']) for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    expected = {  # official: downsample 0.9^7, stage i 0.9^(6-i), the rest 1
        'backbone.downsample_layers.0.0.weight': 0.9 ** 7, 'backbone.downsample_layers.3.1.weight': 0.9 ** 7,
        'backbone.stages.0.0.pointwise_conv1.weight': 0.9 ** 6, 'backbone.stages.3.0.gamma': 0.9 ** 3,
        'backbone.stages.2.1.depthwise_conv.tall.conv.weight': 0.9 ** 4, 'backbone.norm3.weight': 1.0,
        'decode_head.weight': 1.0}
    for name, s in expected.items():
        assert scale[id(named[name])][0] == pytest.approx(s), name
    assert scale[id(named['backbone.stages.3.0.gamma'])][1] == 0.
    assert scale[id(named['backbone.stages.0.0.pointwise_conv1.weight'])][1] == 0.05
    assert len(scale) == len(named)
    cfg['constructor'] = 'RevColLayerDecayOptimizerConstructor'
    with pytest.raises(ValueError, match='no RevCol'):
        build_optim_wrapper(model, cfg)


def test_deploy_cli_on_official_detection_layout(tmp_path):
    spec = importlib.util.spec_from_file_location('deploy_slak', TOOL.parent / 'deploy_slak.py')
    deploy_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy_tool)
    src, dst = tmp_path / 'det.pth', tmp_path / 'deploy.pth'
    official, _ = write_det_checkpoint(src, out_indices=(1, 2))
    assert deploy_tool.main([str(src), str(dst), '--size', '64']) == 0
    meta = torch.load(dst, weights_only=True)['meta']
    model = SLaK(**meta['slak_args']).eval()
    load_checkpoint(model, str(dst), strict=True)
    assert meta['slak_args']['out_indices'] == (1, 2) and model.stages[0][0].depthwise_conv.deployed
    raw = SLaK(**dict(meta['slak_args'], out_norm=False, deploy=True)).eval()
    raw.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith('norm')})
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        for a, b in zip(raw(x), [official.eval()(x)[0][i] for i in (1, 2)]):
            assert rel_err(a, b) < 1e-4
    assert deploy_tool.main([str(dst), str(tmp_path / 'again.pth')]) == 1  # already re-parameterised
