"""Export round trips of a reduced RevCol (tools/deploy/export.py): torch.export (non-strict, dynamic H/W), the
dynamo ONNX exporter run by onnxruntime, TorchScript tracing. Each file is written, reloaded and compared with
eager at two input sizes (the second one not a multiple of 32 and with another batch size)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmrevcol.models import RevCol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools' / 'deploy'))
from export import AsTuple, compare, export  # noqa: E402

ARCH = dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=2)
SIZES = [(1, 96, 128), (2, 72, 100)]
REL = 1e-4


def reduced_revcol(deploy: bool) -> RevCol:
    torch.manual_seed(0)
    model = RevCol(arch=ARCH)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():  # layer scale 1e-6 would hide the blocks: make every weight matter
            if p.dim() == 1 and p.numel() > 1:
                p.normal_(0, 0.5)
    if deploy:
        model.switch_to_deploy()
    return model.eval()


def check_round_trip(model, run):
    for n, h, w in SIZES:
        x = torch.randn(n, 3, h, w)
        with torch.no_grad():
            eager = AsTuple(model)(x)
        diffs = compare(eager, run(x))
        assert len(diffs) == 4
        assert max(rel for _, rel in diffs) < REL, diffs


@pytest.mark.parametrize('fmt,deploy', [('export', True), ('torchscript', False), ('onnx', True)])
def test_export_round_trip_matches_eager_at_two_sizes(fmt, deploy, tmp_path):
    if fmt == 'onnx':
        pytest.importorskip('onnxscript')
        pytest.importorskip('onnxruntime')
    model = reduced_revcol(deploy)
    x = torch.randn(1, 3, *SIZES[0][1:])
    path = tmp_path / f'revcol.{fmt}'
    run = export(model, x, fmt, str(path))
    check_round_trip(model, run)
    if fmt == 'export':
        check_program(torch.export.load(str(path)))


def check_program(program):
    """Batch, H and W are symbolic; the eager fast path (oneDNN private ops) stays out of the graph; nothing writes
    to a parameter (the in-place alpha clamp made export fail)."""
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert not any('mkldnn' in t for t in targets), targets
    assert not any(t.endswith('_.default') or 'copy_' in t for t in targets), targets
    name = program.graph_signature.user_inputs[0]
    placeholder = next(n for n in program.graph.nodes if n.op == 'placeholder' and n.name == name)
    n, _, h, w = placeholder.meta['val'].shape
    assert all(isinstance(d, torch.SymInt) for d in (n, h, w))


def test_export_cli_on_a_config(tmp_path):
    """``tools/deploy/export.py CONFIG none --format torchscript`` writes the file and prints the difference."""
    out = tmp_path / 'demo.pt'
    proc = subprocess.run(
        [sys.executable, 'tools/deploy/export.py', 'configs/demo/upernet_revcol_demo.py', 'none', '--format',
         'torchscript', '--shape', '96', '128', '--check-shape', '64', '96', '--out', str(out), '--cfg-options',
         'model.backbone.arch.channels=[8,16,24,32]', 'model.backbone.arch.layers=[1,1,1,1]',
         'model.decode_head.in_channels=[8,16,24,32]', 'model.auxiliary_head.in_channels=24'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.is_file() and out.stat().st_size > 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith('max relative difference vs eager:')
    assert float(last.split(':')[1]) < REL
    assert 'input 64x96' in proc.stdout
    # the stack's deprecation notices went to the tool's log, not to the console (issue #21)
    assert 'pkg_resources' not in proc.stderr and 'deprecated' not in proc.stderr, proc.stderr[-3000:]
    assert 'third-party warning(s) kept off the console' in proc.stderr.strip().splitlines()[-1]
