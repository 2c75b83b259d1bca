"""RevCol backbone: architectures, shapes, options, checkpoint loading, DDP."""
import os
import pickle
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.runner import load_checkpoint

from mmrevcol.checkpoint import CheckpointMismatchError
from mmrevcol.models import RevCol

TINY = dict(channels=[8, 16, 24, 32], layers=[1, 1, 2, 1], num_columns=3)

# Backbone parameter counts published for the official variants (../shared/docs/revcol.md).
PUBLISHED_PARAMS_M = {'tiny': 29.9, 'small': 60.0, 'base': 138.0, 'large': 272.1, 'xlarge': 832.0, 'huge': 2154.7}


@pytest.mark.parametrize('arch', list(PUBLISHED_PARAMS_M))
def test_arch_parameter_counts_match_paper(arch):
    with torch.device('meta'):  # no memory, no init: just the structure
        model = RevCol(arch=arch, kernel_size=7 if arch == 'huge' else 3)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    # The official counts include the first column's 4 alphas (sum(channels) zeros-multipliers) we don't have.
    assert params == pytest.approx(PUBLISHED_PARAMS_M[arch], rel=0.01)


@pytest.mark.parametrize('arch', ['tiny', 'small'])
def test_named_archs_forward_shapes(arch):
    model = RevCol(arch=arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, c, 64 // s, 64 // s)
                                             for c, s in zip(model.channels, (4, 8, 16, 32))]


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['base', 'large', 'xlarge'])
def test_large_archs_forward_shapes(arch):
    model = RevCol(arch=arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == model.channels


@pytest.mark.parametrize('arch', [
    dict(channels=[12, 24, 36, 48], layers=[1, 2, 6, 2], num_columns=3),  # xlarge-like depth, reduced width
    dict(channels=[12, 24, 36, 48], layers=[1, 2, 6, 2], num_columns=3, top_fusion=True),  # huge-like
])
@pytest.mark.parametrize('reversible', [False, True])
def test_reduced_xl_and_h_train_step(arch, reversible):
    model = RevCol(arch=arch, kernel_size=7, reversible=reversible, drop_path_rate=0.1).train()
    outs = model(torch.randn(2, 3, 64, 96))
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    if arch.get('top_fusion'):
        assert model.columns[1].levels[0].fusion.up_top is not None


@pytest.mark.parametrize('size', [(71, 99), (360, 480), (33, 47)])
@pytest.mark.parametrize('reversible', [False, True])
def test_odd_input_sizes(size, reversible):
    model = RevCol(arch=TINY, reversible=reversible).train()
    h, w = size
    outs = model(torch.randn(1, 3, h, w))
    expected = [(h // 4, w // 4)]
    for _ in range(3):
        expected.append((expected[-1][0] // 2, expected[-1][1] // 2))
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    sum(o.sum() for o in outs).backward()


def test_too_small_or_bad_input_is_a_clear_error():
    model = RevCol(arch=TINY)
    with pytest.raises(ValueError, match='H, W >= 32'):
        model(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        model(torch.randn(3, 64, 64))


def test_out_indices():
    model = RevCol(arch=TINY, out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32]
    assert [o.shape[1] for o in RevCol(arch=TINY, out_indices=-1)(torch.randn(1, 3, 64, 64))] == [32]
    with pytest.raises(ValueError, match='out_indices'):
        RevCol(arch=TINY, out_indices=(4, ))


def test_bad_arch_and_kernel_are_clear_errors():
    with pytest.raises(ValueError, match='Unknown RevCol arch'):
        RevCol(arch='gigantic')
    with pytest.raises(ValueError, match='missing'):
        RevCol(arch=dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='4 positive ints'):
        RevCol(arch=dict(channels=[8, 16, 24], layers=[1, 1, 1, 1], num_columns=2))
    with pytest.raises(ValueError, match='odd'):
        RevCol(arch=TINY, kernel_size=4)
    assert RevCol.parse_arch('L') == RevCol.arch_settings['large']


@pytest.mark.parametrize('frozen_stages', [0, 2])
def test_frozen_stages(frozen_stages):
    model = RevCol(arch=TINY, frozen_stages=frozen_stages, drop_path_rate=0.2, reversible=True)
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert all(n in frozen for n, _ in model.stem.named_parameters(prefix='stem'))
    for n, _ in model.named_parameters():
        if n.startswith('columns.'):
            level = int(n.split('.')[3])
            assert (n in frozen) == (level < frozen_stages), n
    assert not model.stem.training
    if frozen_stages:
        assert not model.columns[1].levels[1].training and model.columns[1].levels[2].training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    for n, p in model.named_parameters():
        assert (p.grad is None) == (n in frozen), n


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def _official_style(model: RevCol) -> dict:
    """A checkpoint of ``model`` laid out like an official mmdet 2 detector checkpoint."""
    inverse = {'depthwise_conv': 'dwconv', 'pointwise_conv1': 'pwconv1', 'pointwise_conv2': 'pwconv2'}
    sd = {}
    for k, v in model.state_dict().items():
        k = k.replace('columns.', 'subnet').replace('.levels.', '.level').replace('.alpha.', '.alpha')
        k = k.replace('.up.proj.', '.up.channel_reschedule.0.').replace('.up.norm.', '.up.channel_reschedule.1.')
        for a, b in inverse.items():
            k = k.replace(f'.{a}.', f'.{b}.')
        sd['module.backbone.' + k] = v
    for level, c in enumerate(model.channels):
        sd[f'module.backbone.subnet0.alpha{level}'] = torch.full((1, c, 1, 1), 0.5)
    sd['module.neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    return {'state_dict': sd, 'meta': {'epoch': 3}}


def test_init_cfg_loads_official_layout(tmp_path):
    src = RevCol(arch=TINY)
    src.init_weights()
    path = tmp_path / 'cmr_official.pth'
    torch.save(_official_style(src), path)
    model = RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_wrong_arch_checkpoint_names_the_mismatch(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(_official_style(RevCol(arch=dict(TINY, num_columns=2))), path)
    model = RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=r"num_columns': 2.*num_columns': 3"):
        model.init_weights()
    path2 = tmp_path / 'wide.pth'
    torch.save(_official_style(RevCol(arch=dict(TINY, channels=[8, 16, 24, 40]))), path2)
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path2))).init_weights()


def test_not_revcol_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    resnet = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, resnet)
    with pytest.raises(CheckpointMismatchError, match='no RevCol weights'):
        RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(resnet))).init_weights()

    good = tmp_path / 'good.pth'
    torch.save(_official_style(RevCol(arch=TINY)), good)
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointMismatchError, match='cannot read checkpoint'):
        RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(corrupt))).init_weights()

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))

    evil = tmp_path / 'evil.pth'
    with open(evil, 'wb') as f:
        pickle.dump({'state_dict': Evil()}, f)
    with pytest.raises(CheckpointMismatchError, match='cannot read checkpoint'):
        RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(evil))).init_weights()

    with pytest.raises(FileNotFoundError):
        RevCol(arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth'))).init_weights()


@pytest.mark.shared
def test_reference_checkpoint_through_init_cfg_and_mmengine(reference, tmp_path):
    path = tmp_path / 'ref.pth'
    torch.save(reference['checkpoint'], path)
    arch = reference['reference']['arch']
    model = RevCol(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    mine = tmp_path / 'mine.pth'
    torch.save({'state_dict': model.state_dict()}, mine)
    again = RevCol(arch=arch)
    load_checkpoint(again, str(mine), strict=True)
    with torch.no_grad():
        for a, b in zip(model(reference['reference']['input']), again(reference['reference']['input'])):
            assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------------------
# DDP on CPU (gloo): reversible gradients averaged across 2 processes equal the single-process gradients.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _weighted_loss(outs):
    # sum(o) would be degenerate: LayerNorm makes d sum / d input ~ 0, leaving round-off noise as gradients
    gen = torch.Generator().manual_seed(1)
    return sum((o * torch.randn(o.shape[1:], generator=gen)).sum() for o in outs)


def _ddp_worker(rank, world, port, find_unused, state, img, result_path):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        model = RevCol(arch=TINY, reversible=True)
        model.load_state_dict(state)
        ddp = torch.nn.parallel.DistributedDataParallel(model.train(), find_unused_parameters=find_unused)
        for _ in range(2):  # two iterations: DDP checks for unfinished reductions on the second
            ddp.zero_grad()
            _weighted_loss(ddp(img[rank:rank + 1])).backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.named_parameters()}, result_path)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('find_unused', [False, True])
def test_ddp_two_cpu_processes(tmp_path, find_unused):
    torch.manual_seed(0)
    model = RevCol(arch=TINY, reversible=False)
    model.init_weights()
    img = torch.randn(2, 3, 64, 64)
    result = tmp_path / 'grads.pth'
    mp.spawn(_ddp_worker, args=(2, _free_port(), find_unused, model.state_dict(), img, str(result)), nprocs=2)
    ddp_grads = torch.load(result, weights_only=True)
    model.train()
    _weighted_loss(model(img)).backward()
    for n, p in model.named_parameters():
        expected = p.grad / 2  # DDP averages the per-process sums
        err = (ddp_grads[n] - expected).abs().max() / expected.abs().max().clamp_min(1e-30)
        assert err < 1e-4, n


@pytest.mark.parametrize('reversible', [False, True])
def test_outputs_are_nchw_contiguous(reversible):
    """The stream runs channels-last, but compiled ops downstream (mmcv RoIAlign on CPU) need NCHW memory."""
    model = RevCol(arch=TINY, reversible=reversible).train()
    for out in model(torch.randn(1, 3, 64, 96)):
        assert out.is_contiguous()


def test_roi_align_on_backbone_features_matches_nchw_reference():
    from mmcv.ops import RoIAlign
    model = RevCol(arch=TINY).eval()
    with torch.no_grad():
        feat = model(torch.randn(1, 3, 64, 64))[0]
        rois = torch.tensor([[0., 2., 2., 40., 30.]])
        got = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2)(feat, rois)
        ref = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2)(feat.clone(memory_format=torch.contiguous_format), rois)
    assert torch.equal(got, ref)
