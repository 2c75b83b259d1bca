"""tools/train.py, tools/test.py, tools/dist_train.sh (2 CPU processes, gloo), --resume, get_flops, on the generated
demo data (a few iterations each)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmrevcol.demo_data import generate

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
DET = 'configs/demo/cascade_revcol_demo.py'
SEG = 'configs/demo/upernet_revcol_demo.py'
# tiny RevCol + short runs: the tools are under test here, not the model
TINY = ['model.backbone.arch.channels=[16,32,48,64]', 'model.backbone.arch.layers=[1,1,1,1]']
SEG_TINY = TINY + ['model.decode_head.in_channels=[16,32,48,64]', 'model.auxiliary_head.in_channels=48']
DET_TINY = TINY + ['model.neck.in_channels=[16,32,48,64]']


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp('data') / 'revcol_demo'), num_train=8, num_val=4, size=96,
                    verbose=False).rstrip('/') + '/'


def env():
    e = dict(os.environ)
    # one thread per process, yielding instead of spinning: 2 cores shared with other processes
    e.update(OMP_NUM_THREADS='1', OMP_WAIT_POLICY='PASSIVE', PYTHONWARNINGS='ignore')
    return e


def run(args, timeout=300, check=True):
    proc = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}')
    return proc


def data_opts(root, det=False):
    opts = [f'{split}.dataset.data_root={root}' for split in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if det:
        ann = root + 'annotations/instances_val.json'
        opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def iters_opts(n, ckpt_interval=None, batch=2):
    return [f'train_cfg.max_iters={n}', f'train_cfg.val_interval={n}',
            f'default_hooks.checkpoint.interval={ckpt_interval or n}', 'default_hooks.checkpoint.max_keep_ckpts=5',
            'default_hooks.logger.interval=1', f'train_dataloader.batch_size={batch}',
            'param_scheduler.0.end=1']


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scalars(work_dir: Path):
    """The val/test metric lines of the json logs of a work dir."""
    out = []
    for f in sorted(work_dir.glob('*/vis_data/scalars.json')) + sorted(work_dir.glob('*/*.json')):
        for line in f.read_text().splitlines():
            out.append(json.loads(line))
    return out


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('task', ['seg', 'det'])
def test_train_then_test(task, demo_root, tmp_path):
    det = task == 'det'
    config = DET if det else SEG
    opts = (DET_TINY if det else SEG_TINY) + data_opts(demo_root, det) + iters_opts(3)
    work = tmp_path / 'work'
    proc = run([PY, 'tools/train.py', config, '--work-dir', str(work), '--cfg-options', *opts])
    ckpt = work / 'iter_3.pth'
    assert ckpt.is_file(), proc.stdout[-3000:]
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')

    out = tmp_path / ('results.pkl' if det else 'preds')
    show = tmp_path / 'show'
    proc = run([PY, 'tools/test.py', config, str(ckpt), '--work-dir', str(tmp_path / 'test'), '--out', str(out),
                '--show-dir', str(show), '--cfg-options', *opts])
    log = proc.stdout + proc.stderr
    key = 'coco/bbox_mAP' if det else 'mIoU'
    assert re.search(re.escape(key) + r':\s*-?[0-9.]+', log), log[-3000:]
    assert out.exists()
    assert list(show.rglob('*.png')) or list((tmp_path / 'test').rglob(f'{show.name}/*.png')), 'no painted images'


def test_train_missing_pretrained_is_a_clear_error(tmp_path):
    proc = run([PY, 'tools/train.py', 'configs/cascade_revcol_t_coco.py', '--work-dir', str(tmp_path),
                '--cfg-options', 'model.backbone.init_cfg.checkpoint=checkpoints/nowhere/revcol_tiny_1k.pth'],
               check=False, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'checkpoints/nowhere/revcol_tiny_1k.pth' in err and 'not found' in err
    assert 'model.backbone.init_cfg=None' in err and 'docs/downstream.md' in err
    assert 'Traceback' not in err


def test_resume_continues(demo_root, tmp_path):
    work = tmp_path / 'work'
    base = [PY, 'tools/train.py', SEG, '--work-dir', str(work), '--cfg-options', *SEG_TINY, *data_opts(demo_root)]
    run(base + iters_opts(2, ckpt_interval=2))
    assert (work / 'iter_2.pth').is_file()
    proc = run(base + iters_opts(4, ckpt_interval=2) + ['--resume'])  # --resume without a path: latest
    log = proc.stdout + proc.stderr
    assert 'resumed' in log.lower() or 'Load checkpoint' in log, log[-3000:]
    assert re.search(r'Iter\(train\) \[3/4\]', log), log[-3000:]
    assert not re.search(r'Iter\(train\) \[1/4\]', log), 'resume restarted from iteration 1'
    assert (work / 'iter_4.pth').is_file()


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_dist_train_two_cpu_processes_and_resume(demo_root, tmp_path):
    work = tmp_path / 'work'
    cmd = ['bash', 'tools/dist_train.sh', SEG, '2', '--work-dir', str(work), '--cfg-options', *SEG_TINY,
           *data_opts(demo_root)]
    e = env()

    def dist(extra):
        # One retry on a fresh port: the free port can be taken between free_port() and torchrun's bind, and a
        # rare gloo rendezvous failure was seen here when other tests spawned processes at the same time. A real
        # error fails both attempts.
        logs = ''
        for attempt in range(2):
            e['PORT'] = str(free_port())
            proc = subprocess.run(cmd + extra, cwd=REPO, env=e, capture_output=True, text=True, timeout=400)
            log = proc.stdout + proc.stderr
            logs += log  # a retry of the resume step resumes from what the failed attempt saved
            if proc.returncode == 0:
                return logs
            errors = [line for line in log.splitlines() if 'Error' in line or 'rank' in line]
            print(f'dist_train attempt {attempt + 1} failed:\n' + '\n'.join(errors[-30:]) + log[-3000:])
        raise AssertionError('\n'.join(errors[-30:]) + log[-3000:])

    log = dist(iters_opts(2, ckpt_interval=2, batch=2))
    assert (work / 'iter_2.pth').is_file()
    assert 'gloo' in log or 'world_size: 2' in log or 'Distributed launcher: pytorch' in log, log[-3000:]
    log = dist(iters_opts(3, ckpt_interval=3, batch=2) + ['--resume'])
    assert re.search(r'Iter\(train\) \[3/3\]', log), log[-3000:]
    assert (work / 'iter_3.pth').is_file()


def test_get_flops_revcol_t_matches_paper():
    proc = run([PY, 'tools/analysis/get_flops.py', 'configs/upernet_revcol_t_ade20k.py', '--shape', '224'],
               timeout=200)
    flops = float(re.search(r'FLOPs \(MACs\): ([0-9.]+)G', proc.stdout).group(1))
    params = float(re.search(r'Params: ([0-9.]+)M', proc.stdout).group(1))
    assert flops == pytest.approx(4.5, rel=0.03)  # paper: 4.5 GMACs, 29.9M params for RevCol-T
    assert params == pytest.approx(29.9, rel=0.01)


@pytest.mark.slow
@pytest.mark.shared
def test_full_size_cascade_revcol_l_starts_training_on_coco_format_data():
    """The issue's check: the unreduced RevCol-L Cascade config trains on a COCO-format set given by --cfg-options."""
    from conftest import SHARED, require_shared
    root = str(require_shared(SHARED / 'data' / 'coco_mini' / 'annotations' / 'instances_train2017.json')
               .parents[1]) + '/'
    data = [f'{split}.dataset.{k}' for split in ('train_dataloader', 'val_dataloader')
            for k in (f'data_root={root}', 'ann_file=annotations/instances_train2017.json',
                      'data_prefix.img=train2017/')]
    cmd = [PY, 'tools/train.py', 'configs/cascade_revcol_l_coco.py', '--work-dir', 'work_dirs/test_full_l',
           '--cfg-options', 'model.backbone.init_cfg=None', 'train_dataloader.batch_size=1',
           'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
           f'val_evaluator.ann_file={root}annotations/instances_train2017.json', 'default_hooks.logger.interval=1',
           *data]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # the first logged training iteration is the proof; then stop the run
            lines.append(line)
            if re.search(r'Epoch\(train\) +\[1\]\[ *1/\d+\].*loss: [0-9.]+', line):
                break
    finally:
        proc.kill()
        proc.wait()
    assert any('Epoch(train)' in line for line in lines), ''.join(lines[-40:])
    assert any("arch='large'" in line for line in lines), 'the full RevCol-L was not what trained'


# ----------------------------------------------------------------------------------------------------------------
# the tools as a family (issues #17, #21): entry points, no tool imports another, documented examples exist
TOOLS = REPO / 'tools'
# exceptions, named so that a new tool cannot slip through (none left: tools/test.py shares mmrevcol/utils/launch.py
# with tools/train.py, tools/check_dataset.py runs through run_tool)
NOT_YET_ON_RUN_TOOL = set()
SIBLING_IMPORTS_KNOWN = {}


def tool_files():
    return sorted(p for p in TOOLS.rglob('*.py') if '__pycache__' not in p.parts)


def test_every_tool_runs_through_run_tool_or_is_an_alias():
    import ast
    for path in tool_files():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.If) and "__name__ == '__main__'" in ast.unparse(n.test)]
        if not mains or rel in NOT_YET_ON_RUN_TOOL:
            continue
        body = ast.unparse(mains[0])
        assert 'run_tool(' in body or 'runpy.run_path(' in body, f'{rel}: entry point without run_tool'


def test_tools_never_import_each_other():
    import ast
    names = {p.stem for p in tool_files()}
    for path in tool_files():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text())
        imported = {a.name.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                     and not n.level}
        siblings = (imported & names) - SIBLING_IMPORTS_KNOWN.get(rel, set())
        assert not siblings, f'{rel} imports the tool(s) {siblings}: move what they share into mmrevcol/utils/'
        if rel in SIBLING_IMPORTS_KNOWN:
            continue
        for line in path.read_text().splitlines():  # only the repository root goes on sys.path, never a tools/ dir
            if 'sys.path' in line and ('insert' in line or '[:0]' in line):
                assert any(up in line for up in ("'..'", 'dirname(osp.dirname(', 'dirname(os.path.dirname(', 'REPO',
                                                 'ROOT')), f'{rel}: {line.strip()}'


def test_documented_example_files_exist():
    """Every ``../shared/...`` file the docs, the README and the tools' docstrings name exists in the shared folder."""
    from conftest import SHARED, require_shared
    require_shared(SHARED / 'data')
    texts = [p for p in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md')), *tool_files()]]
    named = set()
    for path in texts:
        for match in re.finditer(r'\.\./shared/([\w./-]+\.(?:jpg|png|json|pth|txt))', path.read_text()):
            named.add((path.relative_to(REPO).as_posix(), match.group(1)))
    assert any(f.endswith('.jpg') for _, f in named)
    missing = sorted((doc, f) for doc, f in named if not (SHARED / f).exists())
    assert not missing, missing


def test_a_missing_input_is_one_line(tmp_path, capsys):
    from tools_loader import load_tool

    from mmrevcol.utils.cli import run_tool
    export = load_tool('deploy/export')
    image = tmp_path / '0001TP_008550.jpg'
    status = run_tool(export.main, [SEG, 'none', '--image', str(image)], quiet=False)
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ERROR: image not found: '{image}' (absolute: {image})"]


# ----------------------------------------------------------------------------------------------------------------
# one COCO-crop converter, two layouts
def write_coco(root: Path, num_images=8):
    from PIL import Image
    (root / 'annotations').mkdir(parents=True)
    (root / 'train2017').mkdir()
    images, anns = [], []
    for i in range(num_images):
        Image.new('RGB', (100, 80), (i * 30, 50, 0)).save(root / 'train2017' / f'{i}.jpg')
        images.append(dict(id=i, file_name=f'{i}.jpg', width=100, height=80))
        anns += [dict(id=10 * i, image_id=i, category_id=1, bbox=[0, 0, 50, 40], iscrowd=0),
                 dict(id=10 * i + 1, image_id=i, category_id=2, bbox=[60, 10, 36, 36], iscrowd=0),
                 dict(id=10 * i + 2, image_id=i, category_id=3, bbox=[10, 40, 40, 34], iscrowd=0)]
    cats = [dict(id=1, name='hot dog'), dict(id=2, name='cat'), dict(id=3, name='yak')]
    (root / 'annotations' / 'instances_train2017.json').write_text(
        json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return root


def test_coco_box_crops_is_the_converter_in_its_folder_layout(tmp_path):
    """tools/coco_box_crops.py (arguments and output of the HIRI-ViT acceptance set) and
    tools/dataset_converters/coco_crops.py --layout folders write the same files."""
    import hashlib

    from tools_loader import load_tool
    src = write_coco(tmp_path / 'coco')
    alias = load_tool('coco_box_crops')
    counts = alias.build(str(src / 'annotations' / 'instances_train2017.json'), str(src / 'train2017'),
                         str(tmp_path / 'a'), num_classes=2, max_per_class=5)
    assert counts == {'train': {'hot_dog': 4, 'cat': 4}, 'val': {'hot_dog': 1, 'cat': 1}}
    assert run_tool_main(load_tool('dataset_converters/coco_crops'), [
        str(src), str(tmp_path / 'b'), '--layout', 'folders', '--num-classes', '2', '--max-per-class', '5',
        '--split-by', 'box', '--order', 'annotation', '--min-size', '32']) == 0

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob('*')) if p.is_file()}

    a = digest(tmp_path / 'a')
    assert a == digest(tmp_path / 'b')
    assert 'train/hot_dog/0.jpg' in a and 'val/cat/31.jpg' in a and not any('yak' in k for k in a)


def run_tool_main(module, argv):
    from mmrevcol.utils.cli import run_tool
    return run_tool(module.main, argv, quiet=False)


def test_coco_crops_refuses_an_empty_selection_in_one_line(tmp_path, capsys):
    from tools_loader import load_tool
    src = write_coco(tmp_path / 'coco')
    assert run_tool_main(load_tool('dataset_converters/coco_crops'), [str(src), str(tmp_path / 'out'),
                                                                       '--min-size', '500']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('ERROR: ') and 'lower --min-size' in err[0]


# ----------------------------------------------------------------------------------------------------------------
# tools/deploy/reparameterize.py: any backbone with switch_to_deploy
SLAK_TINY = ['model.backbone.arch=dict(dims=[8,16,24,32],depths=[1,1,1,1])', 'model.backbone.kernel_size=[7,7,5,3,3]',
             'model.backbone.width_factor=1.0', 'model.decode_head.in_channels=[8,16,24,32]',
             'model.auxiliary_head.in_channels=24', 'model.decode_head.channels=16', 'model.auxiliary_head.channels=16']


def trained_like(cfg_path, options, path):
    """A model of the config with every weight random and non-trivial (BN statistics, layer scales), saved."""
    import argparse

    import torch
    from mmengine.config import Config

    from mmrevcol.utils.cli import LiteralDictAction
    from mmrevcol.utils.reparameterize import build_model
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=LiteralDictAction)
    cfg = Config.fromfile(str(REPO / cfg_path))
    cfg.merge_from_dict(parser.parse_args(['--o', *options]).o)
    model = build_model(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if 'running_var' in name or name.endswith('gamma')
                        else torch.randn_like(t) * 0.2)
    torch.save({'state_dict': model.state_dict()}, str(path))
    return cfg, model


@pytest.mark.parametrize('family', ['SLaK', 'RevCol'])
def test_reparameterize_any_backbone(family, tmp_path):
    import torch

    from mmrevcol.checkpoint import prepare_model_checkpoint, read_checkpoint
    from mmrevcol.utils.reparameterize import build_model
    from tools_loader import load_tool
    config, options = (('configs/slak/upernet_slak_t_ade20k.py', SLAK_TINY) if family == 'SLaK' else
                       (SEG, SEG_TINY))
    ckpt, out = tmp_path / 'trained.pth', tmp_path / 'deploy' / 'deployed.pth'
    cfg, model = trained_like(config, options, ckpt)
    tool = load_tool('deploy/reparameterize')
    assert run_tool_main(tool, [str(REPO / config), str(ckpt), str(out), '--shape', '64', '64', '--cfg-options',
                                *options]) == 0
    saved = read_checkpoint(str(out))
    meta = saved['meta']
    assert meta['switched'] == [f'backbone ({family})'] and meta['check_rel_err'] < 1e-4
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.eval().extract_feat(x)
    if family == 'SLaK':  # loads as the written config says: deploy=True in the constructor
        from mmengine.config import Config
        assert meta['cfg_options'] == ['model.backbone.deploy=True']
        deployed_cfg = Config.fromfile(str(out.with_suffix('.py')))
        assert deployed_cfg.model.backbone.deploy and deployed_cfg.load_from == str(out)
        deployed = build_model(deployed_cfg)
    else:  # no constructor argument: switch first, then load
        assert 'call switch_to_deploy() on model.backbone (RevCol)' in meta['loading']
        assert not out.with_suffix('.py').exists()
        deployed = build_model(cfg)
        deployed.backbone.switch_to_deploy()
    deployed.load_state_dict(prepare_model_checkpoint(deployed, saved, mode='test'), strict=True)
    with torch.no_grad():
        got = deployed.extract_feat(x)
    for a, b in zip(got, expected):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-4


def test_reparameterize_refuses_a_model_without_switch_to_deploy(tmp_path, capsys):
    from tools_loader import load_tool
    tool = load_tool('deploy/reparameterize')
    config = 'configs/classic/upernet_shufflenet_v2_ade20k.py'
    assert run_tool_main(tool, [str(REPO / config), 'none', str(tmp_path / 'x.pth')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['ERROR: EncoderDecoder has no module with switch_to_deploy(): nothing to re-parameterise']
    assert not (tmp_path / 'x.pth').exists()
