"""HIRI-ViT: its parts (shapes, strides, norms, both branches), the backbone (any size, freezing, checkpointing,
layer depth, strict reload) and the published cost of HIRI-ViT-S."""
import math

import pytest
import torch
from torch import nn

import mmrevcol  # noqa: F401  (registers everything)
from mmrevcol.checkpoint import CheckpointMismatchError, detect_layout
from mmrevcol.models.backbones.hiri_vit import (CFFN, IRDSa, IRDSb, Attention, CFFNBlock, ConvStem, HIRIViT,
                                                HRBlock, HRStem, LayerNorm2d, TransformerBlock)

TINY = dict(channels=[8, 16, 24, 32, 40], depths=[2, 2, 1, 1, 1], expansions=[4, 4, 2, 2, 2],
            num_heads=[0, 0, 0, 2, 2], sr_ratios=[1, 1, 1, 2, 1], stem_channels=8)


def tiny(**kwargs) -> HIRIViT:
    torch.manual_seed(0)
    model = HIRIViT(arch=TINY, **kwargs)
    model.init_weights()
    return model


def ceil_div(x: int, d: int) -> int:
    return -(-x // d)


# -----------------------------------------------------------------------------------------------------------------
# parts
@pytest.mark.parametrize('size', [(64, 64), (33, 47)])
def test_stems_stride_4(size):
    x = torch.randn(2, 3, *size)
    for stem in (HRStem(3, 8, 16), ConvStem(3, 8, 16)):
        assert stem(x).shape == (2, 16, ceil_div(size[0], 4), ceil_div(size[1], 4))


def test_hr_stem_both_branches_count():
    torch.manual_seed(0)
    stem = HRStem(3, 8, 16).eval()
    x = torch.randn(1, 3, 32, 32)
    full = stem(x)
    mid = stem.conv(x)
    # the output is BN(HR + LR): removing either branch changes it
    assert not torch.allclose(full, stem.norm(stem.hr_branch(mid)), atol=1e-4)
    assert not torch.allclose(full, stem.norm(stem.lr_branch(mid)), atol=1e-4)
    torch.testing.assert_close(full, stem.norm(stem.hr_branch(mid) + stem.lr_branch(mid)))
    assert isinstance(stem.norm, nn.BatchNorm2d)


@pytest.mark.parametrize('size', [(16, 16), (15, 9)])
def test_hr_block_both_branches_change_the_output(size):
    torch.manual_seed(0)
    block = HRBlock(8, expansion=4).eval()
    x = torch.randn(2, 8, *size)
    out = block(x)
    assert out.shape == x.shape
    with torch.no_grad():
        hr = block.hr_dw(x)
        lr = block.lr_ffn(block.lr_dw(x))
        assert lr.shape[-2:] == (ceil_div(size[0], 2), ceil_div(size[1], 2))  # the low-resolution branch
        up = nn.functional.interpolate(lr, size=size, mode='nearest')
    torch.testing.assert_close(out, x + hr + up)
    # each branch contributes: zeroing one changes the output
    for branch in (block.hr_dw, block.lr_ffn[-1]):
        other = HRBlock(8, expansion=4).eval()
        other.load_state_dict(block.state_dict())
        name = 'hr_dw' if branch is block.hr_dw else 'lr_ffn.2'
        with torch.no_grad():
            other.get_submodule(name).weight.zero_()
            other.get_submodule(name).bias.zero_()
        assert not torch.allclose(other(x), out, atol=1e-4), name
    # the LR branch is upsampled by repetition: on an even map each 2x2 cell gets one low-resolution value
    if size[0] % 2 == 0:
        assert torch.equal(up[..., 0::2, 0::2], up[..., 1::2, 1::2])


def test_cffn_formula():
    torch.manual_seed(0)
    cffn = CFFN(6, expansion=2)
    x = torch.randn(2, 6, 7, 5)
    z = nn.functional.gelu(cffn.fc1(x))
    torch.testing.assert_close(cffn(x), cffn.fc2(cffn.dwconv(z) + z))
    assert cffn.fc1.out_channels == 12 and cffn.dwconv.groups == 12


def test_cffn_block_is_bn_normalised_residual():
    torch.manual_seed(0)
    block = CFFNBlock(6, 2).eval()
    x = torch.randn(2, 6, 7, 5)
    assert isinstance(block.norm, nn.BatchNorm2d)
    torch.testing.assert_close(block(x), x + block.cffn(block.norm(x)))


@pytest.mark.parametrize('sr', [1, 2, 3])
def test_attention_spatial_reduction_any_size(sr):
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2, sr_ratio=sr)
    h, w = 7, 5
    x = torch.randn(2, h * w, 16)
    assert attn(x, (h, w)).shape == x.shape
    assert hasattr(attn, 'sr') == (sr > 1)


def test_attention_matches_reference_mha():
    """Without reduction it is plain multi-head attention: compare with torch's implementation."""
    torch.manual_seed(0)
    attn = Attention(16, num_heads=4)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.kv.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.kv.bias]))
        ref.out_proj.weight.copy_(attn.proj.weight)
        ref.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 12, 16)
    torch.testing.assert_close(attn(x, (3, 4)), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-4)


def test_transformer_block_norms_and_shape():
    block = TransformerBlock(16, num_heads=2, expansion=2, sr_ratio=2).eval()
    assert isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.BatchNorm2d)
    x = torch.randn(2, 16, 5, 7)
    assert block(x).shape == x.shape


@pytest.mark.parametrize('size', [(16, 16), (15, 9), (1, 1)])
def test_irds_halve_with_ceil(size):
    x = torch.randn(2, 8, *size)
    for ds in (IRDSa(8, 12), IRDSb(8, 12)):
        assert ds(x).shape == (2, 12, ceil_div(size[0], 2), ceil_div(size[1], 2))


def test_irds_structure():
    a, b = IRDSa(8, 12, expansion=2), IRDSb(8, 12, expansion=4)
    assert a.expand[0].kernel_size == (3, 3) and a.expand[0].stride == (2, 2) and a.expand[0].out_channels == 16
    assert a.compress[0].kernel_size == (1, 1)
    # IRDS-b: norm + activation only after the first conv, plus a downsampling shortcut
    assert isinstance(b.expand[1], nn.BatchNorm2d) and isinstance(b.expand[2], nn.GELU)
    assert b.dwconv.groups == 32 and b.dwconv.stride == (2, 2)
    assert isinstance(b.project, nn.Conv2d)
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(b(x), b.project(b.dwconv(b.expand(x))) + b.shortcut(x))


# -----------------------------------------------------------------------------------------------------------------
# backbone
@pytest.mark.parametrize('size', [(128, 128), (97, 65)])
def test_five_stages_strides(size):
    model = tiny(out_indices=(0, 1, 2, 3, 4)).eval()
    outs = model(torch.randn(2, 3, *size))
    assert len(outs) == 5
    for i, out in enumerate(outs):
        stride = 4 * 2 ** i
        assert out.shape == (2, TINY['channels'][i], ceil_div(size[0], stride), ceil_div(size[1], stride))
        assert out.is_contiguous()


def test_default_arch_s_shapes_and_default_out_index():
    model = HIRIViT('s')
    assert model.out_indices == [4]
    assert model.block_types == ['hr', 'hr', 'cffn', 'transformer', 'transformer']
    assert model.arch['downsamples'] == ['irds_a', 'irds_a', 'irds_b', 'irds_b']
    assert isinstance(model.stem, HRStem)
    assert HIRIViT.parse_arch('S') == HIRIViT.parse_arch('small')


def test_bn_in_stem_and_stages_1_3_ln_in_stages_4_5():
    model = tiny(out_indices=(0, 1, 2, 3, 4))

    def norms(module):
        return {type(m) for m in module.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))}

    assert norms(model.stem) == {nn.BatchNorm2d}
    for i in range(3):
        assert norms(model.stages[i]) == {nn.BatchNorm2d}, i
        assert type(getattr(model, f'norm{i}')) is nn.BatchNorm2d
    for i in (3, 4):
        assert nn.LayerNorm in norms(model.stages[i].blocks)
        assert isinstance(getattr(model, f'norm{i}'), LayerNorm2d)
        for block in model.stages[i].blocks:
            assert isinstance(block, TransformerBlock)
            assert isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.BatchNorm2d)
    assert all(isinstance(b, HRBlock) for i in (0, 1) for b in model.stages[i].blocks)
    assert all(isinstance(b, CFFNBlock) for b in model.stages[2].blocks)
    assert isinstance(model.stages[1].downsample, IRDSa) and isinstance(model.stages[3].downsample, IRDSb)


def test_arch_validation():
    with pytest.raises(ValueError, match='Unknown'):
        HIRIViT('xxl')
    with pytest.raises(ValueError, match='missing'):
        HIRIViT(dict(channels=[8, 16]))
    with pytest.raises(ValueError, match='entries'):
        HIRIViT(dict(TINY, depths=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='num_heads'):
        HIRIViT(dict(TINY, num_heads=[0, 0, 0, 3, 2]))
    with pytest.raises(ValueError, match='out_indices'):
        HIRIViT(TINY, out_indices=(5, ))


def test_four_stage_variant_builds():
    """The ablation's M-ViT: four stages, Conv-stem, CFFN blocks then Transformer blocks."""
    arch = dict(channels=[16, 24, 32, 40], depths=[1, 1, 1, 1], expansions=[2, 2, 2, 2], num_heads=[0, 0, 2, 2],
                sr_ratios=[1, 1, 1, 1], block_types=['cffn', 'cffn', 'transformer', 'transformer'], stem='conv')
    model = HIRIViT(arch, out_indices=(0, 1, 2, 3)).eval()
    assert isinstance(model.stem, ConvStem)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]


def test_frozen_stages_and_norm_eval():
    model = tiny(frozen_stages=2, out_indices=(0, 1, 2, 3, 4), norm_eval=False)
    model.train()
    for module in (model.stem, model.stages[0], model.stages[1], model.norm0, model.norm1):
        assert not any(p.requires_grad for p in module.parameters())
        assert not any(m.training for m in module.modules())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert model.stages[2].training
    model = tiny(norm_eval=True).train()
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.stages[3].blocks[0].norm1.training


def test_with_cp_same_output_and_grads():
    x = torch.randn(2, 3, 32, 32)
    grads = []
    outs = []
    for with_cp in (False, True):
        model = tiny(with_cp=with_cp, out_indices=(1, 4)).train()
        out = model(x)
        sum(o.square().mean() for o in out).backward()
        outs.append([o.detach() for o in out])
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_drop_path_linspace():
    model = HIRIViT(TINY, drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.
             for s in model.stages for b in s.blocks]
    assert rates[0] == 0 and math.isclose(rates[-1], 0.3, rel_tol=1e-6) and rates == sorted(rates)


def test_get_layer_depth():
    model = tiny(out_indices=(1, 4))
    depths = TINY['depths']
    num = sum(depths) + 2
    gld = model.get_layer_depth
    assert gld('backbone.stem.conv.0.weight', 'backbone.') == (0, num)
    assert gld('backbone.stages.0.blocks.1.hr_dw.weight', 'backbone.') == (2, num)
    assert gld('backbone.stages.1.downsample.expand.0.weight', 'backbone.') == (depths[0] + 1, num)
    assert gld('backbone.stages.1.blocks.1.lr_ffn.0.weight', 'backbone.') == (depths[0] + 2, num)
    assert gld('backbone.norm4.weight', 'backbone.') == (sum(depths), num)
    assert gld('backbone.norm1.weight', 'backbone.') == (sum(depths[:2]), num)
    assert gld('head.fc.weight', 'backbone.') == (num - 1, num)
    assert gld('stages.3.blocks.0.attn.q.weight') == (sum(depths[:3]) + 1, num)
    assert gld('backbone.stages.3.blocks.0.attn.q.weight', 'backbone.', 'stage_wise') == (4, 7)
    assert gld('backbone.stem.norm.weight', 'backbone.', 'stage_wise') == (0, 7)
    # every parameter gets an id inside the backbone's range
    ids = [gld(n)[0] for n, _ in model.named_parameters()]
    assert min(ids) == 0 and max(ids) == sum(depths)
    with pytest.raises(ValueError):
        gld('stem.conv.0.weight', decay_type='bad')


def test_registered_for_every_scope():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    for registry in (DET, SEG, CLS):
        model = registry.build(dict(type='HIRIViT', arch=TINY))
        assert isinstance(model, HIRIViT)


# -----------------------------------------------------------------------------------------------------------------
# checkpoints
def test_strict_reload_of_a_saved_checkpoint(tmp_path):
    src = tiny(out_indices=(4, )).eval()
    # a classifier checkpoint (mmpretrain keys: backbone.* + head.*)
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 40)
    path = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=state, meta=dict()), path)
    dst = HIRIViT(TINY, out_indices=(4, ), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    dst.eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(dst(x)[0], src(x)[0])
    assert detect_layout(list(src.state_dict())).name == 'HIRIViT'
    # a detector asks for more output norms than the classifier had: they are new layers; the rest is strict
    det = HIRIViT(TINY, out_indices=(1, 2, 3, 4), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    det.init_weights()
    torch.testing.assert_close(det.stages[3].blocks[0].attn.q.weight, src.stages[3].blocks[0].attn.q.weight)
    torch.testing.assert_close(det.norm4.weight, src.norm4.weight)
    # a different arch is refused, naming the mismatches
    wrong = HIRIViT(dict(TINY, depths=[2, 2, 2, 1, 1]), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match='missing in checkpoint'):
        wrong.init_weights()


def test_revcol_keys_are_not_hiri_vit():
    from mmrevcol.models import RevCol
    keys = list(RevCol(dict(channels=[8, 8, 8, 8], layers=[1, 1, 1, 1], num_columns=2)).state_dict())
    layout = detect_layout(keys)
    assert layout is not None and layout.name == 'RevCol'


# -----------------------------------------------------------------------------------------------------------------
# cost
@pytest.mark.slow
def test_hiri_vit_s_flops_at_448():
    """Published: HIRI-ViT-S at 448^2 ~ 5.0 GFLOPs (multiply-accumulates, mmengine's counter). ~15 s on 2 cores."""
    from mmengine.analysis import FlopAnalyzer
    model = HIRIViT('s').eval()
    analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, 448, 448), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    gflops = analyzer.total() / 1e9
    assert abs(gflops - 5.0) / 5.0 < 0.10, gflops
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert 15 < params < 30, params


def test_mmpretrain_layer_decay_constructor_uses_get_layer_depth():
    """mmpretrain's LearningRateDecayOptimWrapperConstructor asks the classifier, which asks the backbone."""
    from mmengine.registry import init_default_scope
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')  # an earlier test may have left another toolbox's scope
    model = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='HIRIViT', arch=TINY),
                              neck=dict(type='GlobalAveragePooling'),
                              head=dict(type='LinearClsHead', num_classes=3, in_channels=40)))
    constructor = LearningRateDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        dict(layer_decay_rate=0.5))
    optim = constructor(model).optimizer
    num = sum(TINY['depths']) + 2
    lrs = sorted({round(g['lr'], 8) for g in optim.param_groups})
    assert max(lrs) == 1.0  # the head
    assert min(lrs) == 0.5 ** (num - 1)  # the stem


# -----------------------------------------------------------------------------------------------------------------
# the ablation path (tools/analysis/hiri_vit_ablation.py)
def _ablation_tool():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / 'tools' / 'analysis' / 'hiri_vit_ablation.py'
    spec = importlib.util.spec_from_file_location('hiri_vit_ablation', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablation_variants_are_the_papers_steps():
    archs = _ablation_tool().ablation_archs('s')
    s = HIRIViT.parse_arch('s')
    mvit, five_conv, five_hr = archs['mvit'], archs['five_conv'], archs['five_hr']
    assert mvit['block_types'] == ['cffn', 'cffn', 'transformer', 'transformer'] and mvit['stem'] == 'conv'
    assert mvit['channels'] == s['channels'][1:] and mvit['downsamples'] == ['irds_a', 'irds_b', 'irds_b']
    assert five_conv['stem'] == 'conv' and five_hr['stem'] == 'hr' and archs['hiri'] == s
    assert five_hr['block_types'][:2] == ['cffn', 'cffn']
    assert [2 * d for d in five_hr['depths'][:2]] == s['depths'][:2]  # one CFFN block per pair of HR-blocks
    assert five_hr['depths'][2:] == s['depths'][2:]
    for arch in archs.values():  # valid archs (building them is the slow cost test's job)
        assert HIRIViT.parse_arch(arch)['channels'][-1] == 448


@pytest.mark.slow
def test_ablation_costs_match_the_paper():
    """Table 7's published costs, within 10% (~1-2 min on 2 cores)."""
    rows = {(r['row']): r for r in _ablation_tool().ablation_table('s')}
    for row, r in rows.items():
        if r['paper']:
            assert abs(r['gflops'] - r['paper']) / r['paper'] < 0.10, (row, r['gflops'], r['paper'])
    assert rows['8']['gflops'] > rows['9']['gflops'] > rows['10']['gflops']  # HR-stem, then HR-blocks, save
