"""tools/convert_checkpoint.py: official layouts -> RevCol checkpoints that load with load_checkpoint(strict=True),
with and without kernel padding, with a ``backbone.`` prefix, and clear errors on bad input."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import load_checkpoint
from torch import nn

import mmrevcol  # noqa: F401
from mmrevcol.checkpoint import to_revcol_state_dict
from mmrevcol.models.backbones.revcol import RevCol
from mmrevcol.version import __version__

from test_kernel_padding import TINY, REF_ARCH, check_padded, random_revcol, rel_err, write_official_checkpoint

TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'convert_checkpoint.py'


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    src = random_revcol(seed=2)
    path = write_official_checkpoint(tmp_path_factory.mktemp('official') / 'revcol_tiny_official.pth', src)
    return path, src


@pytest.mark.parametrize('kernel_size', [None, 3, 7])
def test_round_trip(official, tmp_path, kernel_size):
    path, src = official
    dst = tmp_path / 'out' / 'converted.pth'
    argv = [str(path), str(dst)] + ([] if kernel_size is None else ['--kernel-size', str(kernel_size)])
    assert tool.main(argv) == 0
    k = kernel_size or 3
    model = RevCol(arch=TINY, kernel_size=k)
    load_checkpoint(model, str(dst), strict=True)
    ckpt = torch.load(str(dst), weights_only=True)
    meta = ckpt['meta']
    assert meta['arch'] == TINY and meta['kernel_size'] == k and meta['source_kernel_size'] == 3
    assert meta['source'] == str(path.resolve()) and meta['mmrevcol_version'] == __version__
    assert meta['padded_kernels'] == (10 if k == 7 else 0)
    if k == 3:
        assert all(torch.equal(v, model.state_dict()[n]) for n, v in src.state_dict().items())
    else:
        check_padded(model.state_dict(), src.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for o, r in zip(model.eval()(x), src(x)):
            assert rel_err(o, r) < 1e-4


def test_seed_and_std(official, tmp_path):
    path, _ = official
    outs = {}
    for name, extra in (('a', ['--seed', '5']), ('b', ['--seed', '5']), ('c', ['--seed', '6']),
                        ('d', ['--seed', '5', '--std', '1e-3'])):
        tool.main([str(path), str(tmp_path / f'{name}.pth'), '--kernel-size', '5', *extra])
        outs[name] = torch.load(str(tmp_path / f'{name}.pth'), weights_only=True)['state_dict']
    key = 'columns.1.levels.2.blocks.1.depthwise_conv.weight'
    assert torch.equal(outs['a'][key], outs['b'][key])
    assert not torch.equal(outs['a'][key], outs['c'][key])
    noise = outs['d'][key][..., 0, :].double()
    assert 0.3e-3 < noise.std().item() < 3e-3


def test_prefix_for_load_from(official, tmp_path):
    path, src = official
    dst = tmp_path / 'det.pth'
    assert tool.main([str(path), str(dst), '--kernel-size', '7', '--prefix', 'backbone.']) == 0
    keys = list(torch.load(str(dst), weights_only=True)['state_dict'])
    assert keys and all(k.startswith('backbone.') for k in keys)

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = RevCol(arch=TINY, kernel_size=7)

    det = Detector()
    load_checkpoint(det, str(dst), strict=True)
    # and the prefixed file converts back
    assert tool.main([str(dst), str(tmp_path / 'back.pth')]) == 0
    load_checkpoint(RevCol(arch=TINY, kernel_size=7), str(tmp_path / 'back.pth'), strict=True)


def test_detection_layout_and_src_prefix(tmp_path):
    src = random_revcol(seed=3)
    path = write_official_checkpoint(tmp_path / 'cmr.pth', src, layout='detection')
    assert tool.main([str(path), str(tmp_path / 'a.pth')]) == 0
    load_checkpoint(RevCol(arch=TINY), str(tmp_path / 'a.pth'), strict=True)
    assert tool.main([str(path), str(tmp_path / 'b.pth'), '--src-prefix', 'backbone.']) == 0
    load_checkpoint(RevCol(arch=TINY), str(tmp_path / 'b.pth'), strict=True)


def test_errors(official, tmp_path, capsys):
    path, _ = official
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(path.read_bytes()[:2000])  # truncated zip
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint at all\n' * 10)
    resnet = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.randn(4, 3, 7, 7), 'fc.bias': torch.zeros(2)}}, str(resnet))
    empty = tmp_path / 'empty.pth'
    torch.save({'epoch': 3, 'note': 'no weights'}, str(empty))
    cases = [
        (corrupt, [], 'cannot read checkpoint'),
        (garbage, [], 'cannot read checkpoint'),
        (resnet, [], 'no RevCol weights'),
        (empty, [], 'holds no tensors'),
        (tmp_path / 'missing.pth', [], 'no such checkpoint file'),
        (path, ['--kernel-size', '4'], 'odd'),
    ]
    for src, extra, message in cases:
        dst = tmp_path / 'never.pth'
        assert tool.main([str(src), str(dst), *extra]) == 1, src
        err = capsys.readouterr().err
        assert 'convert_checkpoint: error:' in err and message in err, err
        assert not dst.exists()
    # a checkpoint with 7x7 kernels cannot be "padded" to 3x3
    big = write_official_checkpoint(tmp_path / 'k7.pth', random_revcol(kernel_size=7))
    assert tool.main([str(big), str(tmp_path / 'never.pth'), '--kernel-size', '3']) == 1
    assert 'larger than the model' in capsys.readouterr().err


def test_cli_subprocess_exit_code(tmp_path):
    """The script itself (one process start: slow on a busy 2-core machine): exit 1, a message, no traceback."""
    (tmp_path / 'bad.pth').write_bytes(b'\x00' * 100)
    bad = subprocess.run([sys.executable, str(TOOL), str(tmp_path / 'bad.pth'), str(tmp_path / 'x.pth')],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and 'cannot read checkpoint' in bad.stderr and 'Traceback' not in bad.stderr


@pytest.mark.shared
@pytest.mark.parametrize('kernel_size', [None, 13])
def test_reference_checkpoint_round_trip(reference, tmp_path, kernel_size):
    src = tmp_path / 'official.pth'
    torch.save(reference['checkpoint'], str(src))
    dst = tmp_path / 'converted.pth'
    argv = [str(src), str(dst)] + ([] if kernel_size is None else ['--kernel-size', str(kernel_size)])
    assert tool.main(argv) == 0
    k = kernel_size or 3
    model = RevCol(arch=REF_ARCH, kernel_size=k)
    load_checkpoint(model, str(dst), strict=True)
    assert torch.load(str(dst), weights_only=True)['meta']['arch'] == REF_ARCH
    if k != 3:
        check_padded(model.state_dict(), to_revcol_state_dict(reference['checkpoint']))
    with torch.no_grad():
        out = model.eval()(reference['reference']['input'])
    for o, r in zip(out, reference['reference']['outputs']):
        assert rel_err(o, r) < 1e-4
