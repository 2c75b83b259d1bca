"""mmrevcol.analysis and tools/analysis/{cka,erf}.py (issue #20): CKA's defining properties, the ERF of convolutions
whose receptive field is known, and both tools end to end on tiny images with reduced archs."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import mmrevcol  # noqa: F401
from conftest import SHARED, require_shared
from mmrevcol.analysis import (cka, cka_from_grams, contribution_map, erf_heatmap, gram_linear,
                               high_contribution_area, hsic, select_output)
from mmrevcol.utils.cli import run_tool
from tools_loader import REPO, load_tool

REVCOL_DEMO = 'configs/demo/upernet_revcol_demo.py'
CONVNEXT_T = 'configs/convnext/upernet_convnext_t_ade20k.py'
REVCOL_ARCH = 'model.backbone.arch=dict(channels=[8,16,24,32],layers=[1,1,1,1],num_columns=3)'
CONVNEXT_ARCH = 'model.backbone.arch=dict(depths=[1,1,1,1],channels=[8,16,24,32])'


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# CKA
@pytest.mark.parametrize('debiased', [True, False])
def test_cka_of_a_representation_with_itself_is_one(debiased):
    x = randn(12, 5, 4, 4).float()
    assert cka(x, x, debiased) == pytest.approx(1.0, abs=1e-12)


def test_debiased_cka_of_independent_noise_is_about_zero():
    x, y = randn(64, 2000, seed=1), randn(64, 2000, seed=2)
    assert abs(cka(x, y, debiased=True)) < 0.05
    assert cka(x, y, debiased=False) > 0.5  # the bias the unbiased HSIC removes


@pytest.mark.parametrize('debiased', [True, False])
def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling(debiased):
    x = randn(20, 30, seed=3)
    y = x[:, :10] @ randn(10, 10, seed=4) + 0.5 * randn(20, 10, seed=5)  # related, not equal
    q, _ = torch.linalg.qr(randn(30, 30, seed=6))
    reference = cka(x, y, debiased)
    assert 0.1 < reference < 0.99
    assert cka(x @ q, y, debiased) == pytest.approx(reference, rel=1e-10)
    assert cka(3.7 * x, 0.01 * y, debiased) == pytest.approx(reference, rel=1e-10)
    assert cka(x @ q * 2.5, y, debiased) == pytest.approx(reference, rel=1e-10)
    # not invariant to a general (non-orthogonal, anisotropic) linear map
    assert abs(cka(x * torch.linspace(0.1, 10, 30, dtype=torch.float64), y, debiased) - reference) > 1e-3


@pytest.mark.parametrize('unbiased', [True, False])
def test_centred_gram_cka_equals_the_textbook_hsic(unbiased):
    """CKA from centred Gram matrices (Kornblith et al.) equals HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with
    the explicit estimators (Song et al.'s unbiased one, as the official RevCol tools/visual.py)."""
    x, y = randn(9, 7, seed=7), randn(9, 3, seed=8) + randn(9, 7, seed=7)[:, :3]
    k, l = gram_linear(x), gram_linear(y)  # noqa: E741
    expected = hsic(k, l, unbiased) / torch.sqrt(hsic(k, k, unbiased) * hsic(l, l, unbiased))
    assert cka_from_grams(k, l, unbiased) == pytest.approx(float(expected), rel=1e-10)


def test_gram_in_chunks_equals_the_plain_product():
    x = randn(6, 1000, seed=9).float()
    assert torch.allclose(gram_linear(x, chunk_elements=100), x.double() @ x.double().T, rtol=1e-12)


def test_cka_needs_four_examples_when_debiased():
    with pytest.raises(ValueError, match='at least 4'):
        cka(randn(3, 5), randn(3, 5))
    assert 0 <= cka(randn(3, 5, seed=1), randn(3, 5, seed=2), debiased=False) <= 1


# ----------------------------------------------------------------------------------------------------------------
# ERF
def _positive(module: nn.Module) -> nn.Module:
    """Positive weights: no cancellation, so the gradient is non-zero exactly on the receptive field."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(0.1, 1.0)
    return module.eval()


def _support(contribution: torch.Tensor):
    rows, cols = torch.nonzero(contribution, as_tuple=True)
    return rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()


@pytest.mark.parametrize('k', [1, 3, 5, 7])
def test_erf_of_one_conv_is_its_kernel_support(k):
    torch.manual_seed(0)
    conv = _positive(nn.Conv2d(3, 4, k, padding=k // 2))
    images = torch.rand(3, 3, 15, 15) + 0.1
    contribution, index, map_hw = contribution_map(conv, images)
    assert (index, map_hw) == (0, (15, 15))
    c = 7  # the centre of the 15 x 15 output and input
    assert _support(contribution) == (c - k // 2, c + k // 2, c - k // 2, c + k // 2)
    assert int((contribution > 0).sum()) == k * k
    # d centre / d input of one conv is its weights: exactly, summed over out channels and images
    expected = conv.weight.detach().double().abs().sum(dim=(0, 1)) * 3
    assert torch.allclose(contribution[c - k // 2:c + k // 2 + 1, c - k // 2:c + k // 2 + 1], expected, rtol=1e-6)
    side, ratio = high_contribution_area(contribution)[0.99]
    assert (side, ratio) == (k, pytest.approx(k * k / 225))


def test_erf_of_two_stacked_3x3_convs_is_5x5():
    torch.manual_seed(0)
    net = _positive(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)))
    contribution, _, _ = contribution_map(net, torch.rand(2, 3, 17, 17) + 0.1)
    assert _support(contribution) == (6, 10, 6, 10)
    assert int((contribution > 0).sum()) == 25


def test_erf_of_a_strided_backbone_picks_the_output_by_stride():
    outs = (torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 8, 8), torch.zeros(1, 2))
    assert select_output(outs, (64, 64), stride=8)[0] == 1
    assert select_output(outs, (64, 64), stage=-3)[0] == 0
    with pytest.raises(ValueError, match='not a feature map'):
        select_output(outs, (64, 64), stage=-1)
    with pytest.raises(ValueError, match='strides'):
        select_output(outs, (64, 64), stride=32)


def test_high_contribution_area_and_heatmap():
    delta = torch.zeros(11, 11, dtype=torch.float64)
    delta[5, 5] = 2.0
    assert all(v == (1, pytest.approx(1 / 121)) for v in high_contribution_area(delta).values())
    uniform = torch.ones(10, 10, dtype=torch.float64)
    ratios = high_contribution_area(uniform, (0.2, 0.5, 1.0))
    assert ratios[0.2] == (5, pytest.approx(0.25))  # rows/cols 3..7 of 0..9: 25 of 100 cells >= 20 %
    assert ratios[1.0][1] == pytest.approx(1.0)
    heat = erf_heatmap(torch.tensor([[0.0, 1e-3], [1.0, 0.1]]))
    assert heat.min() == 0 and heat.max() == 1 and heat[0, 1] == pytest.approx(0.5)  # floor 1e-6: 6 decades
    assert torch.equal(erf_heatmap(torch.zeros(3, 3)), torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match='non-negative'):
        high_contribution_area(-uniform)


# ----------------------------------------------------------------------------------------------------------------
# the tools
@pytest.fixture
def images(tmp_path):
    import mmcv
    rng = np.random.default_rng(0)
    folder = tmp_path / 'images'
    for i in range(4):
        mmcv.imwrite((rng.random((40, 52, 3)) * 255).astype(np.uint8), str(folder / f'im{i}.jpg'))
    return folder


def run(name, argv, capsys=None):
    code = run_tool(load_tool(f'analysis/{name}').main, [str(a) for a in argv])
    return code, (capsys.readouterr() if capsys is not None else None)


def test_cka_tool_columns_of_a_reduced_revcol(images, tmp_path, capsys):
    out = tmp_path / 'cka'
    code, _ = run('cka', [REPO / REVCOL_DEMO, 'none', '--images', images, '--out', out, '--size', 64,
                          '--cfg-options', REVCOL_ARCH], capsys)
    assert code == 0
    result = json.loads((out / 'cka.json').read_text())
    assert result['mode'] == 'columns' and result['num_images'] == 4 and result['target'] == 'final features'
    for name in ('image', 'final features'):
        values = np.asarray(result['cka'][name])
        assert values.shape == (4, 3) and np.isfinite(values).all()  # levels x columns
    for png in ('cka_levels.png', 'cka_heatmap.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_cka_tool_stages_of_a_library_backbone_with_labels(images, tmp_path, capsys):
    """Class sub-folders give labels; a backbone without columns gets the stage-to-stage CKA."""
    for i, path in enumerate(sorted(images.iterdir())):
        (images / f'class{i % 2}').mkdir(exist_ok=True)
        path.rename(images / f'class{i % 2}' / path.name)
    out = tmp_path / 'cka'
    code, _ = run('cka', [REPO / CONVNEXT_T, 'none', '--images', images, '--out', out, '--size', 64,
                          '--cfg-options', CONVNEXT_ARCH], capsys)
    assert code == 0
    result = json.loads((out / 'cka.json').read_text())
    assert result['mode'] == 'stages' and result['target'] == 'labels'
    matrix = np.asarray(result['stages'])
    assert matrix.shape == (4, 4) and np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
    assert (out / 'cka_stages.png').stat().st_size > 0


def test_cka_tool_expected_failures_are_one_line(images, tmp_path, capsys):
    (images / 'im3.jpg').unlink()
    code, captured = run('cka', [REPO / REVCOL_DEMO, 'none', '--images', images, '--out', tmp_path, '--size', 64,
                                 '--cfg-options', REVCOL_ARCH], capsys)
    assert code == 1 and captured.err.strip() == 'ERROR: debiased CKA needs at least 4 images, got 3 ' \
        '(more images, or --biased)'
    code, captured = run('cka', [REPO / REVCOL_DEMO, 'none', '--images', tmp_path / 'nope', '--out', tmp_path],
                         capsys)
    assert code == 1 and captured.err.strip() == f'ERROR: image folder not found: {tmp_path / "nope"}'


def test_erf_tool_compares_two_backbones_with_per_config_options(images, tmp_path, capsys):
    out = tmp_path / 'erf'
    code, captured = run('erf', [REPO / REVCOL_DEMO, REPO / CONVNEXT_T, '--images', images, '--out', out,
                                 '--size', 64, '--num-images', 2, '--stride', 16, '--names', 'RevCol', 'ConvNeXt',
                                 '--cfg-options', REVCOL_ARCH, '--cfg-options', CONVNEXT_ARCH], capsys)
    assert code == 0, captured.err
    result = json.loads((out / 'erf.json').read_text())
    assert [(m['name'], m['output'], m['stride'], m['map']) for m in result['models']] == [
        ('RevCol', 2, 16, '4x4'), ('ConvNeXt', 2, 16, '4x4')]
    for m in result['models']:
        ratios = [m['area_ratio'][t]['ratio'] for t in ('0.2', '0.3', '0.5', '0.99')]
        assert ratios == sorted(ratios) and 0 < ratios[0] and ratios[-1] <= 1
    for name in ('erf_compare.png', 'erf_RevCol.png', 'erf_ConvNeXt.png'):
        assert (out / name).read_bytes()[:4] == b'\x89PNG'
    assert np.load(out / 'erf_RevCol.npy').shape == (64, 64)
    table = (out / 'erf_area_ratios.md').read_text()
    assert '| RevCol | 2 (16) | 2 |' in table and '| ConvNeXt |' in table
    assert (out / 'erf_area_ratios.csv').read_text().startswith('name,config,checkpoint,output,stride')


def test_erf_tool_loads_checkpoints_strictly(images, tmp_path, capsys):
    from mmrevcol.models import RevCol
    good = RevCol(arch=dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=3))
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in good.state_dict().items()}}, tmp_path / 'good.pth')
    wrong = RevCol(arch=dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=2))
    torch.save({'state_dict': wrong.state_dict()}, tmp_path / 'wrong.pth')
    argv = [REPO / REVCOL_DEMO, '--images', images, '--out', tmp_path / 'erf', '--size', 64, '--num-images', 1,
            '--cfg-options', REVCOL_ARCH, '--checkpoints']
    code, captured = run('erf', argv + [tmp_path / 'good.pth'], capsys)
    assert code == 0, captured.err
    code, captured = run('erf', argv + [tmp_path / 'wrong.pth'], capsys)
    assert code == 1 and captured.err.startswith('ERROR: ') and 'does not match the RevCol model' in captured.err
    code, captured = run('erf', argv + [tmp_path / 'missing.pth'], capsys)
    assert code == 1 and captured.err.strip() == f'ERROR: checkpoint not found: {tmp_path / "missing.pth"}'


def test_tool_entry_point_prints_one_line(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/analysis/erf.py', REVCOL_DEMO, '--images', str(tmp_path / 'no'),
                           '--out', str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f'ERROR: image folder not found: {tmp_path / "no"}'
    assert 'Traceback' not in proc.stderr


@pytest.mark.shared
def test_erf_from_the_official_revcol_reference_checkpoint(tmp_path, capsys):
    """The reference checkpoint (official layout, converted on load) into the matching reduced arch, on CamVid."""
    ref = torch.load(require_shared(SHARED / 'reference' / 'revcol_official_tiny3col.pth'), weights_only=True)
    camvid = require_shared(SHARED / 'data' / 'camvid' / 'img_dir' / 'val')
    torch.save(ref['checkpoint'], tmp_path / 'ref.pth')
    arch = ref['reference']['arch']
    code, captured = run('erf', [REPO / REVCOL_DEMO, '--checkpoints', tmp_path / 'ref.pth', '--images', camvid,
                                 '--out', tmp_path / 'erf', '--size', 64, '--num-images', 2, '--cfg-options',
                                 f'model.backbone.arch=dict(channels={arch["channels"]},layers={arch["layers"]},'
                                 f'num_columns={arch["num_columns"]})'.replace(' ', '')], capsys)
    assert code == 0, captured.err
    assert json.loads((tmp_path / 'erf' / 'erf.json').read_text())['models'][0]['checkpoint'].endswith('ref.pth')


def test_column_features_of_revcol_vit():
    """RevCol-ViT is read column by column like RevCol: features[column][level], each (n, C, H, W)."""
    from mmrevcol.analysis import column_features, is_column_backbone
    from mmrevcol.models import RevColViT
    model = RevColViT(arch=dict(embed_dims=16, layers=[1, 1, 1, 1], num_heads=2, num_columns=2), img_size=32,
                      patch_size=8).eval()
    assert is_column_backbone(model)
    images = torch.randn(5, 3, 32, 32)
    feats = column_features(model, images, batch_size=2)
    assert [len(c) for c in feats] == [4, 4] and all(f.shape == (5, 16, 4, 4) for c in feats for f in c)
    with torch.no_grad():
        assert torch.allclose(feats[-1][-1], model(images)[0], atol=1e-6)  # the last column's top level: the output


@pytest.mark.shared
def test_dataset_images_and_segmentation_labels_of_the_camvid_config():
    from mmrevcol.analysis import load_config, load_images
    camvid = require_shared(SHARED / 'data' / 'camvid')
    cfg = load_config(str(REPO / 'configs/acceptance/upernet_revcol_camvid.py'),
                      {'val_dataloader.dataset.data_root': str(camvid)})
    data = load_images(cfg, None, 'val', 64, 5)
    assert data.images.shape == (5, 3, 64, 64) and len(data.names) == 5 and data.num_classes == 11
    labels = data.label_matrix()
    assert labels.shape == (5, 11 * 8 * 8)  # class fractions in 8 x 8 cells
    fractions = labels.view(5, 11, 64).sum(1)
    # per cell: at most 1 (unlabelled pixels belong to no class), 1 in most cells
    assert fractions.max() <= 1 + 1e-6 and (fractions > 0.99).float().mean() > 0.5
