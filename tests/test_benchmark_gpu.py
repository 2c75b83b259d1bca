"""tools/analysis/benchmark_gpu.py: the smoke run on CPU (every step, tiny sizes), the bare-GPU-machine import
constraint (no mmdet, mmseg, mmcv.ops), one step's failure costing its rows only, the tables and the acceptance
lines. Never timed: the numbers a CPU run prints say nothing."""
import json
import os
import subprocess
import sys

from conftest import REPO
from tools_loader import load_tool

tool = load_tool('analysis/benchmark_gpu')


def run(capsys, argv):
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
    return rows, out


def test_quick_cpu_run_prints_every_table(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    rows, out = run(capsys, ['--device', 'cpu', '--quick', '--out-dir', str(tmp_path)])
    meta = rows[0]
    assert meta['table'] == 'meta' and 'threads' in meta['device']  # the device is named (describe_device)
    assert out.count(meta['device']) >= 2  # in the JSON line and the markdown header
    errors = [r for r in rows if r.get('status') == 'error']
    assert not errors, errors
    ok = [r for r in rows if r.get('status') == 'ok']
    tables = {r['table'] for r in ok}
    assert tables == {'slak', 'revcol_rev', 'infer', 'detection', 'sparsity'}
    impls = {(r['model'], r['impl']) for r in ok if r['table'] == 'slak'}
    assert {('SLaK (tiny)', 'conv'), ('SLaK (tiny)', 'fft'), ('ConvNeXt (tiny)', '-'),
            ('SLaK (tiny) deployed', 'conv')} <= impls
    assert {(r['dtype'], r['layout'], r['mode']) for r in ok if r['table'] == 'slak' and r['impl'] == 'conv'
            and r['model'] == 'SLaK (tiny)'} == {(d, l, m) for d in ('fp32', 'bf16') for l in ('nchw', 'channels_last')
                                                  for m in ('train', 'infer')}
    assert all(r['img_s'] > 0 for r in ok if 'img_s' in r)
    # what needs a GPU is skipped with its reason, not silently left out
    skipped = [r for r in rows if r.get('status') == 'skipped']
    assert any('CUDA graph' in r['variant'] and 'CUDA' in r['reason'] for r in skipped if 'variant' in r)
    assert any(r.get('impl') == 'triton' and 'TRITON_INTERPRET' in r['reason'] for r in skipped)
    assert {r['table'] for r in skipped} >= {'check', 'slak', 'infer', 'detection'}
    sparsity = next(r for r in ok if r['table'] == 'sparsity')
    assert sparsity['exact'] and sparsity['skipped'] >= 2 and sparsity['updates'] >= 1
    assert sparsity['density'] == sparsity['target']
    for title in ('SLaK per implementation', 'reversible vs plain', 'Inference (fp32', 'Detection-size',
                  'Dynamic sparsity', 'Acceptance (issue #19)'):
        assert title in out
    saved = (tmp_path / 'benchmark_gpu.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in saved] == rows
    assert 'Acceptance' in (tmp_path / 'benchmark_gpu.md').read_text()


def test_profile_mode_prints_profiler_tables(capsys):
    _, out = run(capsys, ['--device', 'cpu', '--quick', '--profile'])
    assert out.count('### SLaK (tiny) training step') == 4  # fp32/bf16 x NCHW/channels-last (cudnn: CUDA only)
    assert 'Self CPU' in out and 'aten::' in out


def test_a_step_over_its_box_costs_its_rows_only():
    args = tool.parse_args(['--device', 'cpu', '--quick'])
    rows = tool.run_step_process(args, ['--device', 'cpu', '--quick'], 'convnext', box=0.5)
    assert len(rows) == 1 and rows[0]['status'] == 'error' and 'timeout' in rows[0]['error']
    rows = tool.run_step_here(args, 'revcol-rev', box=0.01)
    assert rows[-1]['status'] == 'error' and 'StepTimeout' in rows[-1]['error']


BARE_GPU_MACHINE = """
import sys
for name in ('mmdet', 'mmseg', 'mmcv.ops', 'mmcv._ext'):
    sys.modules[name] = None  # not installed there (mmcv-lite, no mmdet/mmseg)
sys.argv = ['benchmark_gpu.py', '--device', 'cpu', '--quick', '--steps', 'sparsity', 'infer']
import runpy
try:
    runpy.run_path('tools/analysis/benchmark_gpu.py', run_name='__main__')
except SystemExit as e:
    assert not e.code, e.code
"""


def test_runs_without_mmdet_mmseg_and_mmcv_ops():
    """The GPU loan machine has mmcv-lite and no mmdet/mmseg: every import of the tool must do without them."""
    proc = subprocess.run([sys.executable, '-c', BARE_GPU_MACHINE], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'OUT': ''})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    assert {r['table'] for r in rows if r.get('status') == 'ok'} == {'infer', 'sparsity'}
    assert not [r for r in rows if r.get('status') == 'error']


def test_acceptance_lines_from_rows():
    s = tool.settings(tool.parse_args(['--device', 'cpu']))
    n = s.names

    def slak(model, impl, dtype, layout, mode, img_s):
        return dict(table='slak', model=model, impl=impl, dtype=dtype, layout=layout, mode=mode, img_s=img_s,
                    status='ok', batch=32, size=224)

    rows = [slak(n['slak'], 'conv', 'fp32', 'nchw', 'train', 188.),
            slak(n['slak'], 'conv', 'fp32', 'nchw', 'infer', 909.),
            slak(n['slak'], 'triton', 'fp32', 'nchw', 'train', 300.),
            slak(n['slak'], 'triton', 'bf16', 'nchw', 'infer', 1500.),
            slak(n['convnext'], '-', 'fp32', 'nchw', 'train', 691.),
            slak(n['convnext'], '-', 'fp32', 'nchw', 'infer', 2266.),
            slak(n['convnext'], '-', 'bf16', 'nchw', 'infer', 2400.),
            dict(table='infer', model=n['revcol'], variant='deployed + CUDA graph', size='224x224', batch=1,
                 img_s=320., status='ok'),
            dict(table='infer', model=n['convnext'], variant='eager', size='224x224', batch=1, img_s=372., status='ok')]
    text = '\n'.join(tool.acceptance(rows, s))
    assert 'SLaK-T train / ConvNeXt-T: best 0.43× (impl=triton, fp32, nchw); goal ≥ 0.5× — not met' in text
    assert 'SLaK-T infer / ConvNeXt-T: best 0.62× (impl=triton, bf16, nchw); goal ≥ 0.6× — met' in text
    assert "SLaK-T fp32 train: best 1.60× today's" in text and '— met' in text
    assert 'RevCol-T batch 1 at 224x224 / ConvNeXt-T (eager): best 0.86×; goal ≥ 0.8× — met' in text
    table = tool.markdown(rows, '## header', s)
    assert '| SLaK-T | triton | fp32 | nchw | 300.0 | 0.43 | - | - |' in table
