"""Issue #9, the one loading policy: every path that puts weights into a model is strict and names what is wrong.

Rows of the issue covered here: 1 (--resume without checkpoints still needs the pretrained file), 2 (official
backbone file via load_from), 3 (test.py with another arch), 4 (EMA-only checkpoint), 5 (3x3 checkpoint into a 7x7
model via load_from, no hook in the config), 9 (--resume of a pretrained file), 10 (resume into another kernel size),
11 (misspelt init_cfg type), 12 (README's init_cfg option on configs without init_cfg), 15 (reversible gradients of
unused parameters), 16 (with_cp with reversible), 17 (convert_checkpoint.py X X), plus the strict ``Pretrained``
initializer for backbones of other libraries and the class-count fine-tuning exception.
"""
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

import mmrevcol  # noqa: F401
from mmrevcol.checkpoint import CheckpointMismatchError, check_init_cfg, prepare_model_checkpoint
from mmrevcol.engine import CheckpointLoadingHook, KernelPaddingHook
from mmrevcol.models.backbones.revcol import RevCol

from test_kernel_padding import TINY, check_padded, random_revcol, write_official_checkpoint

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools'))
import convert_checkpoint  # noqa: E402
import train  # noqa: E402

SEG_DEMO = str(REPO / 'configs/demo/upernet_revcol_demo.py')


class Segmentorish(torch.nn.Module):
    """A RevCol backbone, a neck and a class-dependent head, named like an mmdet/mmseg model."""

    def __init__(self, kernel_size=3, num_classes=5, arch=TINY):
        super().__init__()
        self.backbone = RevCol(arch=arch, kernel_size=kernel_size)
        self.neck = torch.nn.Conv2d(4, 4, 3)
        self.decode_head = torch.nn.Module()
        self.decode_head.conv_seg = torch.nn.Conv2d(4, num_classes, 1)


def full_checkpoint(model, **extra):
    return {'state_dict': OrderedDict((k, v.clone()) for k, v in model.state_dict().items()), 'meta': {}, **extra}


def hook_load(model, checkpoint, mode, hook=None):
    hook = hook or CheckpointLoadingHook(mode=mode)
    hook.after_load_checkpoint(SimpleNamespace(model=model), checkpoint)
    model.load_state_dict(checkpoint['state_dict'], strict=False)  # as mmengine's Runner does next
    return checkpoint


# ------------------------------------------------------------------------------------------------ whole models
def test_same_model_loads_in_every_mode():
    src = Segmentorish()
    for mode in ('load_from', 'resume', 'test'):
        dst = Segmentorish()
        hook_load(dst, full_checkpoint(src), mode)
        assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_official_backbone_file_via_load_from_points_at_init_cfg(tmp_path):
    """Row 2: a classification checkpoint of the backbone alone is not a whole model."""
    from mmengine.runner.checkpoint import _load_checkpoint
    path = write_official_checkpoint(tmp_path / 'revcol_official.pth', random_revcol())
    with pytest.raises(CheckpointMismatchError, match=r'backbone-only RevCol checkpoint(.|\n)*init_cfg'):
        hook_load(Segmentorish(), _load_checkpoint(str(path)), 'load_from')
    # the explicit opt-in (KernelPaddingHook's default) loads the backbone, necks/heads stay initialised
    model = Segmentorish(kernel_size=7)
    hook_load(model, _load_checkpoint(str(path)), None, hook=KernelPaddingHook(mode='load_from'))
    check_padded({k[9:]: v for k, v in model.state_dict().items() if k.startswith('backbone.')},
                 random_revcol().state_dict())


def test_other_arch_is_a_named_error_in_test_mode():
    """Row 3 (the hook part): no half-random model is evaluated."""
    other = Segmentorish(arch=dict(TINY, channels=[8, 16, 24, 40]))
    with pytest.raises(CheckpointMismatchError, match=r'\(test\)(.|\n)*shape mismatch \(\d+\)'):
        hook_load(Segmentorish(), full_checkpoint(other), 'test')


def test_ema_only_checkpoint_is_loaded():
    """Row 4: mmengine's EMAHook layout (``ema_state_dict`` with ``module.`` keys and ``steps``) alone."""
    src = Segmentorish()
    ema = OrderedDict((f'module.{k}', v.clone()) for k, v in src.state_dict().items())
    ema['steps'] = torch.tensor(7)
    dst = Segmentorish(kernel_size=7)
    hook_load(dst, {'ema_state_dict': ema, 'meta': {}}, None, hook=KernelPaddingHook(mode='load_from'))
    assert torch.equal(dst.decode_head.conv_seg.weight, src.decode_head.conv_seg.weight)
    check_padded({k[9:]: v for k, v in dst.state_dict().items() if k.startswith('backbone.')},
                 src.backbone.state_dict())


def test_small_kernels_padded_by_the_default_hook():
    """Row 5: load_from of a 3x3 model into a 7x7 one, with the hook every tool adds (no KernelPaddingHook)."""
    src = Segmentorish(kernel_size=3)
    dst = Segmentorish(kernel_size=7)
    hook_load(dst, full_checkpoint(src), 'load_from')
    check_padded({k[9:]: v for k, v in dst.state_dict().items() if k.startswith('backbone.')},
                 src.backbone.state_dict())
    assert torch.equal(dst.neck.weight, src.neck.weight)


def test_resume_needs_a_training_checkpoint(tmp_path):
    """Row 9: --resume of pretrained weights says what to use instead (no KeyError 'meta')."""
    src = Segmentorish()
    ckpt = full_checkpoint(src)
    del ckpt['meta']
    with pytest.raises(CheckpointMismatchError, match='not a training checkpoint.*load_from'):
        hook_load(Segmentorish(), ckpt, 'resume')


def test_resume_into_another_kernel_size_is_named():
    """Row 10: a kernel_size=3 run resumed with a kernel_size=5 config fails at load, naming the shapes."""
    with pytest.raises(CheckpointMismatchError, match=r'resume(.|\n)*depthwise_conv.weight: checkpoint '
                                                      r'\(16, 1, 3, 3\) vs model \(16, 1, 5, 5\)'):
        hook_load(Segmentorish(kernel_size=5), full_checkpoint(Segmentorish(kernel_size=3)), 'resume')


def test_class_count_change_is_the_one_partial_load_allowed(capsys):
    src = Segmentorish(num_classes=150)
    dst = Segmentorish(num_classes=11)
    before = dst.decode_head.conv_seg.weight.clone()
    hook_load(dst, full_checkpoint(src), 'load_from')
    assert torch.equal(dst.decode_head.conv_seg.weight, before)  # left at its initialisation
    assert torch.equal(dst.neck.weight, src.neck.weight)
    # ... but not when testing or resuming, and not for the backbone or neck
    for mode in ('test', 'resume'):
        with pytest.raises(CheckpointMismatchError, match='conv_seg'):
            hook_load(Segmentorish(num_classes=11), full_checkpoint(src), mode)
    wide = Segmentorish()
    wide.neck = torch.nn.Conv2d(4, 8, 3)
    with pytest.raises(CheckpointMismatchError, match='neck.weight'):
        hook_load(Segmentorish(), full_checkpoint(wide), 'load_from')


def test_allow_partial_is_explicit_and_logged():
    src = Segmentorish()
    ckpt = full_checkpoint(src)
    del ckpt['state_dict']['neck.weight']
    with pytest.raises(CheckpointMismatchError, match=r"missing in checkpoint \(1\): \['neck.weight'\]"):
        prepare_model_checkpoint(Segmentorish(), ckpt, 'load_from')
    weights = prepare_model_checkpoint(Segmentorish(), ckpt, 'load_from', allow_partial=True)
    assert 'neck.weight' not in weights and 'neck.bias' in weights


# ------------------------------------------------------------------------------------------------- init_cfg
def test_misspelt_init_cfg_type_names_the_valid_ones():
    """Row 11."""
    with pytest.raises(ValueError, match=r"unknown initializer type 'Pretrianed'; valid types: .*'Pretrained'"):
        RevCol(arch=TINY, init_cfg=dict(type='Pretrianed', checkpoint='x.pth'))
    with pytest.raises(ValueError, match='needs checkpoint'):
        check_init_cfg(dict(type='Pretrained'))
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=dict(type='Pretrianed', checkpoint='x')))))
    from mmrevcol.utils.launch import InvalidConfigError  # an expected error: one line from the tools (run_tool)
    with pytest.raises(InvalidConfigError, match=r'model.backbone.init_cfg: unknown initializer type'):
        train.load_cfg(SimpleNamespace(config=_dump(cfg), launcher='none', cfg_options=None, work_dir=None))


def test_strict_pretrained_opt_in_for_other_libraries_backbones(tmp_path):
    """init_cfg Pretrained with strict=True on an mmpretrain backbone goes through the same policy: strict, head keys
    logged."""
    from mmpretrain.models.backbones import ConvNeXt
    arch = dict(depths=[1, 1, 1, 1], channels=[8, 16, 24, 32])
    src = ConvNeXt(arch=arch)
    weights = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    weights['head.fc.weight'] = torch.randn(10, 32)  # a classifier's checkpoint
    torch.save({'state_dict': weights}, tmp_path / 'cls.pth')
    init = dict(type='Pretrained', checkpoint=str(tmp_path / 'cls.pth'), prefix='backbone.', strict=True)
    dst = ConvNeXt(arch=arch, init_cfg=init)
    dst.init_weights()
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    other = ConvNeXt(arch=dict(arch, channels=[8, 16, 24, 40]), init_cfg=init)
    with pytest.raises(CheckpointMismatchError, match=r'cls.pth: checkpoint does not match the ConvNeXt model'):
        other.init_weights()


def test_strict_pretrained_is_not_undone_by_children_init_weights(tmp_path):
    """The opt-in keeps the type name 'Pretrained', which mmengine and the libraries test for: mmengine applies it
    after the children's own init, and ShuffleNetV2 skips its default init, so nothing overwrites the load."""
    from mmpretrain.models.backbones import ShuffleNetV2
    src = ShuffleNetV2(widen_factor=0.5)
    with torch.no_grad():
        for p in src.parameters():
            p.uniform_(-1, 1)
    torch.save({'state_dict': src.state_dict()}, tmp_path / 'shuffle.pth')
    dst = ShuffleNetV2(widen_factor=0.5,
                       init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'shuffle.pth'), strict=True))
    dst.init_weights()
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), name


RESNET_LOAD = r"""
import sys, torch
if sys.argv[1] == 'plugin':
    import mmrevcol  # noqa: F401
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope
init_default_scope('mmdet')
model = MODELS.build(dict(type='ResNet', depth=18, init_cfg=dict(type='Pretrained', checkpoint=sys.argv[2])))
model.init_weights()
torch.save(model.state_dict(), sys.argv[3])
"""


@pytest.mark.parametrize('case', ['extra_fc', 'missing_layer4'])
def test_unrelated_mmdet_resnet_loads_the_same_with_and_without_the_plugin(tmp_path, case):
    """Importing mmrevcol must not change how an unrelated model loads its torchvision-style checkpoint: mmengine's
    non-strict Pretrained stays mmengine's (extra ``fc.*`` keys ignored, missing ``layer4.1.*`` left at init)."""
    import subprocess
    import sys
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    weights = ResNet(depth=18).state_dict()
    if case == 'extra_fc':
        weights['fc.weight'], weights['fc.bias'] = torch.randn(10, 512), torch.randn(10)
    else:
        weights = {k: v for k, v in weights.items() if not k.startswith('layer4.1.')}
    torch.save(weights, tmp_path / 'tv.pth')
    script = tmp_path / 'load.py'
    script.write_text(RESNET_LOAD)
    results = {}
    for mode in ('plain', 'plugin'):
        out = tmp_path / f'{mode}.pth'
        proc = subprocess.run([sys.executable, str(script), mode, str(tmp_path / 'tv.pth'), str(out)],
                              capture_output=True, text=True, cwd=str(REPO), timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[mode] = torch.load(out, weights_only=True)
    loaded = {k for k in weights if not k.startswith('fc.')}
    for key in loaded:  # the checkpoint's weights reached the model in both processes
        assert torch.equal(results['plain'][key], weights[key]), key
        assert torch.equal(results['plugin'][key], weights[key]), key
    assert results['plain'].keys() == results['plugin'].keys()


def test_readme_init_cfg_option_works_on_configs_without_init_cfg(tmp_path):
    """Row 12: ``--cfg-options model.backbone.init_cfg.checkpoint=PATH`` on the demo configs (init_cfg=None)."""
    ckpt = str(tmp_path / 'revcol_tiny_1k.pth')
    args = train.parse_args([SEG_DEMO, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                             f'model.backbone.init_cfg.checkpoint={ckpt}'])
    cfg = train.load_cfg(args)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=ckpt)
    assert cfg.default_hooks.checkpoint_loading.type == 'CheckpointLoadingHook'  # stated by the config


def test_resume_in_an_empty_work_dir_still_needs_the_pretrained_file(tmp_path):
    """Row 1: nothing to resume from = a new run, which fails early on a missing pretrained file."""
    missing = tmp_path / 'missing_revcol.pth'
    argv = [SEG_DEMO, '--resume', '--work-dir', str(tmp_path / 'empty'), '--cfg-options',
            f'model.backbone.init_cfg.checkpoint={missing}']
    with pytest.raises(SystemExit, match='missing_revcol.pth'):
        train.main(argv)


# -------------------------------------------------------------------------------------------------- backbone
def test_reversible_unused_parameters_get_no_gradient():
    """Row 15: out_indices=(0,) leaves some levels unused; reversible and plain agree on which get gradients."""
    from test_reversible import _pair, rel_err
    plain, reversible = _pair(drop_path_rate=0., alpha=0.3, out_indices=(0,))
    x = torch.randn(1, 3, 64, 64)
    grads = {}
    for model in (plain, reversible):
        model(x)[0].sum().backward()
        grads[model.reversible] = {n: p.grad for n, p in model.named_parameters()}
    unused = {n for n, g in grads[False].items() if g is None}
    assert unused, 'the test needs parameters that no output depends on'
    assert {n for n, g in grads[True].items() if g is None} == unused
    for name, g in grads[False].items():
        if g is not None:
            assert rel_err(grads[True][name], g) < 1e-5, name


def test_with_cp_and_reversible_warns():
    """Row 16."""
    with pytest.warns(UserWarning, match='with_cp=True is ignored when reversible=True'):
        model = RevCol(arch=TINY, reversible=True, with_cp=True)
    assert model.with_cp is False
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        RevCol(arch=TINY, with_cp=True)


# ----------------------------------------------------------------------------------------------------- tools
def test_convert_refuses_to_overwrite(tmp_path, capsys):
    """Row 17: SRC == DST (or any existing DST) needs --force; the write is atomic."""
    src = write_official_checkpoint(tmp_path / 'src.pth', random_revcol())
    before = src.read_bytes()
    assert convert_checkpoint.main([str(src), str(src)]) == 1
    assert 'is the source file: refusing to overwrite it (use --force)' in capsys.readouterr().err
    assert src.read_bytes() == before
    dst = tmp_path / 'dst.pth'
    assert convert_checkpoint.main([str(src), str(dst)]) == 0
    assert convert_checkpoint.main([str(src), str(dst), '--kernel-size', '7']) == 1
    assert 'exists' in capsys.readouterr().err
    assert convert_checkpoint.main([str(src), str(dst), '--kernel-size', '7', '--force']) == 0
    assert torch.load(dst, weights_only=True)['meta']['kernel_size'] == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith('.tmp')] == []


def _dump(cfg: Config) -> str:
    import tempfile
    f = tempfile.NamedTemporaryFile('w', suffix='.py', delete=False)
    f.write(cfg.pretty_text)
    f.close()
    return f.name


def test_test_tool_refuses_a_checkpoint_of_another_arch(tmp_path):
    """Row 3 end to end: tools/test.py builds the Runner, loads the checkpoint through the policy, stops."""
    from mmengine.registry import MODELS, init_default_scope
    from mmrevcol.demo_data import generate

    import test as test_tool
    from test_tools import SEG_TINY, data_opts
    root = generate(str(tmp_path / 'demo'), num_train=2, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    # a visualizer of its own: mmengine keeps one instance per name (config name + second) in the process
    opts = SEG_TINY + data_opts(root) + ['visualizer.name=test_loading_policy']
    cfg = train.load_cfg(train.parse_args([SEG_DEMO, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts,
                                           'model.backbone.arch.num_columns=3']))
    init_default_scope(cfg.default_scope)
    other = MODELS.build(cfg.model)  # 3 columns; the run under test has the demo's 2
    torch.save({'state_dict': other.state_dict(), 'meta': {}}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointMismatchError, match=r'\(test\)(.|\n)*unexpected in checkpoint \(\d+\): '
                                                      r"\['backbone.columns.2"):
        test_tool.main([SEG_DEMO, str(tmp_path / 'other.pth'), '--work-dir', str(tmp_path / 'w'),
                        '--cfg-options', *opts, 'model.backbone.arch.num_columns=2'])
