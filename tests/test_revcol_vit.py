"""RevColViT (paper appendix B.1): archs, shapes, the reversible engine on ViT columns (gradients, memory), and its
classification and dense-prediction configs."""
import copy

import pytest
import torch

import mmrevcol  # noqa: F401
from mmrevcol.models import RevColViT
from mmrevcol.models.backbones.revcol_vit import CosineAttention
from test_configs import CONFIG_DIR, build_model, load

TINY = dict(embed_dims=32, layers=[1, 1, 1, 1], num_heads=2, num_columns=3)


def randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.alpha.' in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 + 0.3)
            elif 'norm' in name and name.endswith('weight'):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.5)
            elif 'logit_scale' not in name:
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.4)
    return model


@pytest.mark.parametrize('arch,dims,blocks,heads,params', [('small', 224, 2, 4, 20.6), ('base', 384, 3, 6, 88.7)])
def test_paper_archs(arch, dims, blocks, heads, params):
    m = RevColViT(arch)
    assert (m.embed_dims, m.num_heads, m.num_columns, m.layers) == (dims, heads, 4, [blocks] * 4)
    assert sum(p.numel() for p in m.parameters()) / 1e6 == pytest.approx(params, abs=0.1)
    attn = m.columns[0].levels[0].blocks[0].attn
    assert isinstance(attn, CosineAttention) and attn.num_heads == heads


@pytest.mark.parametrize('size', [(64, 64), (80, 97)])
def test_constant_resolution_nchw_outputs(size):
    m = RevColViT(TINY, img_size=64, out_indices=(0, 1, 2, 3))
    m.init_weights()
    outs = m(torch.randn(2, 3, *size))
    assert len(outs) == 4
    for o in outs:
        assert o.shape == (2, 32, size[0] // 16, size[1] // 16) and o.is_contiguous()
    with pytest.raises(ValueError, match='RevColViT arch dict'):
        RevColViT(dict(embed_dims=32, layers=[1, 1, 1, 1]))


def test_cosine_attention_weights_ignore_the_scale_of_q_and_k():
    """Normalised dot-product attention: scaling the tokens leaves the attention weights unchanged (only v, hence
    the output before the projection bias, scales); plain dot-product attention would sharpen."""
    attn = CosineAttention(32, 2)
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        attn.qkv.bias.zero_()
        b = attn.proj.bias
        assert torch.allclose(attn(10 * x) - b, 10 * (attn(x) - b), rtol=1e-4, atol=1e-4)


def _grads(model, x, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in model(x))
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('drop_path,dtype,tol', [(0.0, torch.float64, 1e-10), (0.2, torch.float64, 1e-10),
                                                  (0.2, torch.float32, 1e-4)])
def test_reversible_gradients_match_plain(drop_path, dtype, tol):
    """Exact in float64 (drop path replayed); in float32 the reversible stream's rounding differs from plain
    autograd's at the 1e-7 level, which the attention temperatures' gradients amplify to ~1e-5."""
    plain = randomise(RevColViT(TINY, img_size=64, drop_path_rate=drop_path, out_indices=(0, 1, 2, 3)))
    rev = RevColViT(TINY, img_size=64, drop_path_rate=drop_path, out_indices=(0, 1, 2, 3), reversible=True)
    rev.load_state_dict(plain.state_dict())
    plain, rev = plain.to(dtype).train(), rev.to(dtype).train()
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0), dtype=dtype)
    gp, gr = _grads(plain, x), _grads(rev, x)
    assert gp.keys() == gr.keys() and len(gp) == len(list(plain.parameters()))
    for name in gp:
        err = ((gp[name] - gr[name]).abs().max() / gp[name].abs().max().clamp_min(1e-30)).item()
        assert err < tol, (name, err)


def test_reversible_memory_constant_in_columns():
    """Bytes autograd keeps for backward (deterministic): reversible 6 columns ~ 2 columns; plain grows."""

    def saved(n, reversible):
        m = RevColViT(dict(TINY, num_columns=n), img_size=64, reversible=reversible).train()
        params = {p.untyped_storage().data_ptr() for p in m.parameters()}
        seen = {}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = m(torch.randn(1, 3, 64, 64))
        out[0].sum().backward()
        return sum(seen.values())

    assert saved(6, True) <= 1.10 * saved(2, True)
    assert saved(6, False) > 2.5 * saved(2, False)


# ----------------------------------------------------------------------------------------------------------------
def test_configs():
    names = sorted(p.name for p in (CONFIG_DIR / 'revcol_vit').glob('*.py'))
    assert names == ['revcol_vit_b_in1k.py', 'revcol_vit_s_in1k.py', 'upernet_revcol_vit_s_ade20k.py']
    for size, dims, dpr in (('s', 224, 0.1), ('b', 384, 0.2)):
        cfg = load(f'revcol_vit/revcol_vit_{size}_in1k.py')
        assert cfg.default_scope == 'mmpretrain' and 'mmrevcol' in cfg.custom_imports['imports']
        b = cfg.model.backbone
        assert b.type == 'RevColViT' and b.reversible and b.drop_path_rate == dpr and cfg.model.head.in_channels == dims
    seg = load('revcol_vit/upernet_revcol_vit_s_ade20k.py')
    assert seg.default_scope == 'mmseg' and seg.model.neck.type == 'Feature2Pyramid'
    assert list(seg.model.decode_head.in_channels) == [224] * 4 and seg.model.backbone.out_indices == (0, 1, 2, 3)


def test_classification_config_trains_and_predicts():
    from mmpretrain.structures import DataSample
    cfg = copy.deepcopy(load('revcol_vit/revcol_vit_s_in1k.py'))
    cfg.model.backbone.update(arch=dict(TINY), img_size=64)
    cfg.model.head.update(in_channels=32, num_classes=4)
    cfg.model.data_preprocessor = dict(cfg.data_preprocessor, num_classes=4)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)]
    samples = [DataSample().set_gt_label(i % 4) for i in range(4)]
    model.train()
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    opt.step()
    model.eval()
    with torch.no_grad():
        preds = model.val_step(dict(inputs=inputs[:1], data_samples=samples[:1]))
    assert preds[0].pred_score.shape == (4, )


def test_dense_config_trains_and_predicts():
    from test_configs import tiny_batch
    cfg = copy.deepcopy(load('revcol_vit/upernet_revcol_vit_s_ade20k.py'))
    cfg.model.backbone.update(arch=dict(TINY), img_size=64)
    cfg.model.neck.embed_dim = 32
    cfg.model.decode_head.update(in_channels=[32] * 4, channels=16)
    cfg.model.auxiliary_head.update(in_channels=32, channels=8)
    cfg.model.data_preprocessor.size = (128, 128)
    model = build_model(cfg)
    model.train()
    data = model.data_preprocessor(tiny_batch(cfg), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        out = model(**model.data_preprocessor(tiny_batch(cfg, batch_size=1), False), mode='predict')
    assert out[0].pred_sem_seg.data.shape[-2:] == (128, 128)


def test_pretrained_classifier_checkpoint_loads_with_resized_pos_embed(tmp_path):
    from mmrevcol.checkpoint import CheckpointMismatchError
    src = randomise(RevColViT(TINY, img_size=64))
    sd = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    sd['head.fc.weight'] = torch.zeros(4, 32)
    torch.save({'state_dict': sd}, str(tmp_path / 'cls.pth'))
    m = RevColViT(TINY, img_size=96, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'cls.pth')))
    m.init_weights()
    assert m.pos_embed.shape[-2:] == (6, 6)
    for k, v in src.state_dict().items():
        if k != 'pos_embed':
            assert torch.equal(m.state_dict()[k], v), k
    wrong = RevColViT(dict(TINY, num_columns=2), init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'cls.pth')))
    with pytest.raises(CheckpointMismatchError, match='unexpected'):
        wrong.init_weights()
