"""The same config is the same run through every entry point (issue #17): the configs state the run's safety.

* the demo detection and segmentation configs give the same hooks (types and priorities, in order) and the same
  built training pipeline through the project's ``tools/train.py``, mmdet's / mmseg's own ``tools/train.py`` (installed
  with the toolbox under ``.mim/tools``; ``mim train`` runs it) and ``Runner.from_cfg(Config.fromfile(p))``;
* a NaN run started through mmseg's own ``tools/train.py`` stops with ``NonFiniteLossError`` and leaves no checkpoint
  with non-finite weights;
* every shipped training config states the safety hooks, its checkpoint interval, the anchor filter where an anchor
  head needs it and the image-orientation policy; a config without the safety hooks (a user's own) gets one warning
  from the project's tools and nothing added.

No training for the first point: a Runner whose ``train()`` records the hooks and builds the train dataset instead
(``runner_type``, which all three entry points honour).
"""
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, RUNNERS, init_default_scope
from mmengine.runner import Runner, get_priority

import mmrevcol  # noqa: F401
from mmrevcol.demo_data import generate
from mmrevcol.engine.nan_guard import NonFiniteLossError, non_finite_weights
from tools_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'
DET = 'configs/demo/cascade_revcol_demo.py'
SEG = 'configs/demo/upernet_revcol_demo.py'
CHANNELS = [8, 16, 24, 32]
TINY = {  # a smaller demo RevCol: the entry points are under test here, not the model
    'mmdet': {'model.backbone.arch.channels': CHANNELS, 'model.backbone.arch.layers': [1, 1, 1, 1],
              'model.neck.in_channels': CHANNELS},
    'mmseg': {'model.backbone.arch.channels': CHANNELS, 'model.backbone.arch.layers': [1, 1, 1, 1],
              'model.decode_head.in_channels': CHANNELS, 'model.auxiliary_head.in_channels': CHANNELS[2]},
}
SAFETY = {'checkpoint': 'SafeCheckpointHook', 'nan_guard': 'NonFiniteLossHook',
          'checkpoint_loading': 'CheckpointLoadingHook'}
POLICY = 'color_ignore_orientation'
# every config under configs/ but the fragments is a training config
TRAINING = sorted(p.relative_to(REPO).as_posix() for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts)


def upstream_train(toolbox: str) -> Path:
    """The toolbox's own ``tools/train.py``, as installed with it (what ``mim train`` runs)."""
    path = Path(importlib.util.find_spec(toolbox).origin).parent / '.mim' / 'tools' / 'train.py'
    if not path.is_file():
        pytest.skip(f'{path} not installed')
    return path


@RUNNERS.register_module(force=True)
class ProbeRunner(Runner):
    """A Runner whose ``train()`` records what the run would be, without training: the hooks (type and priority, in
    the order they run) and the transforms of the built train dataset."""
    probes = []

    def train(self):
        dataset = self.build_dataloader(self._train_dataloader).dataset
        while not hasattr(dataset, 'pipeline'):  # dataset wrappers
            dataset = dataset.dataset
        ProbeRunner.probes.append(describe(self.hooks, dataset.pipeline.transforms))
        return self.model


def describe(hooks, transforms) -> dict:
    return dict(hooks=[(type(h).__name__, get_priority(h.priority)) for h in hooks],
                pipeline=[(type(t).__name__, repr(t)) for t in transforms])


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp('data') / 'revcol_demo'), num_train=2, num_val=1, size=64,
                    verbose=False).rstrip('/') + '/'


def options(scope: str, root: str) -> dict:
    """The same overrides for every entry point: the tiny model, the generated data."""
    opts = dict(TINY[scope], **{f'{s}.dataset.data_root': root for s in ('train_dataloader', 'val_dataloader',
                                                                          'test_dataloader')})
    if scope == 'mmdet':
        opts.update({f'{e}.ann_file': f'{root}annotations/instances_val.json' for e in ('val_evaluator',
                                                                                       'test_evaluator')})
    return opts


def cli(opts: dict) -> list:
    return [f"{k}={str(v).replace(' ', '')}" for k, v in opts.items()]


@pytest.mark.parametrize('config', [DET, SEG])
def test_same_hooks_and_pipeline_through_every_entry_point(config, demo_root, tmp_path, monkeypatch):
    scope = Config.fromfile(str(REPO / config)).default_scope
    ProbeRunner.probes.clear()

    opts = options(scope, demo_root)

    def probe(entry):  # (mmengine keeps one visualizer per name in a process: each Runner gets its own)
        return ['runner_type=ProbeRunner', f'visualizer.name=same_run_{entry}_{tmp_path.name}']

    # (a) the project's tools/train.py
    load_tool('train').main([str(REPO / config), '--work-dir', str(tmp_path / 'a'), '--cfg-options', *cli(opts),
                             *probe('a')])
    # (b) mmdet's / mmseg's own tools/train.py: its main(), argument parsing included
    spec = importlib.util.spec_from_file_location(f'upstream_{scope}_train', upstream_train(scope))
    upstream = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(upstream)
    monkeypatch.setattr(sys, 'argv', ['train.py', str(REPO / config), '--work-dir', str(tmp_path / 'b'),
                                      '--cfg-options', *cli(opts), *probe('b')])
    upstream.main()
    assert len(ProbeRunner.probes) == 2
    project, toolbox = ProbeRunner.probes

    # (c) Runner.from_cfg(Config.fromfile(p)), nothing else
    cfg = Config.fromfile(str(REPO / config))
    cfg.merge_from_dict(dict(opts, **{'visualizer.name': f'same_run_c_{tmp_path.name}'}))
    cfg.work_dir = str(tmp_path / 'c')
    runner = Runner.from_cfg(cfg)
    dataset = runner.build_dataloader(runner._train_dataloader).dataset
    plain = describe(runner.hooks, dataset.pipeline.transforms)

    assert project == toolbox == plain
    names = [name for name, _ in plain['hooks']]
    assert set(SAFETY.values()) <= set(names), names
    transforms = [name for name, _ in plain['pipeline']]
    assert plain['pipeline'][0][0] == 'LoadImageFromFile' and POLICY in plain['pipeline'][0][1]
    if scope == 'mmdet':
        assert transforms[-2:] == ['SkipImagesWithoutAnchors', 'PackDetInputs'], transforms


def nan_run_options(root: str) -> list:
    """lr=1e6 on the tiny demo segmentor: the loss turns non-finite within a few iterations; a checkpoint every
    iteration, so that a broken one would be written if anything let it through."""
    return cli(options('mmseg', root)) + [
        'train_cfg.max_iters=6', 'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=6', 'train_dataloader.batch_size=2', 'param_scheduler.0.end=1',
        'optim_wrapper.optimizer.lr=1e6']


def assert_no_broken_checkpoint(work: Path) -> None:
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(REPO / SEG))
    cfg.merge_from_dict(TINY['mmseg'])
    model = MODELS.build(cfg.model)
    saved = sorted(work.glob('iter_*.pth'))
    for path in saved:
        model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True)['state_dict'])
        assert non_finite_weights(model) == [], path
    last = work / 'last_checkpoint'
    if last.is_file():
        assert Path(last.read_text().strip()) in saved


def test_nan_run_through_upstream_train_py_stops_named(tmp_path, monkeypatch):
    """mmseg's own tools/train.py (its main(), in this process): it knows nothing of mmrevcol, the config does."""
    root = generate(str(tmp_path / 'data'), num_train=4, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    spec = importlib.util.spec_from_file_location('upstream_mmseg_train_nan', upstream_train('mmseg'))
    upstream = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(upstream)
    work = tmp_path / 'work'
    monkeypatch.setattr(sys, 'argv', ['train.py', str(REPO / SEG), '--work-dir', str(work), '--cfg-options',
                                      *nan_run_options(root), f'visualizer.name=same_run_nan_{tmp_path.name}'])
    with pytest.raises(NonFiniteLossError, match='non-finite loss at iteration'):
        upstream.main()
    assert_no_broken_checkpoint(work)


@pytest.mark.slow  # a fresh interpreter (torch, mmseg, mmrevcol imports): ~15 s
def test_nan_run_through_upstream_train_py_process(tmp_path):
    """The same in its own process, as a user starts it: mmrevcol comes in through the config's custom_imports."""
    root = generate(str(tmp_path / 'data'), num_train=4, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    work = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, str(upstream_train('mmseg')), SEG, '--work-dir', str(work),
                           '--cfg-options', *nan_run_options(root)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'NonFiniteLossError: non-finite loss at iteration' in out, out[-4000:]
    assert_no_broken_checkpoint(work)


# ---------------------------------------------------------------------------------------------------------------
def _anchor_head(model: dict):
    """``(anchor_generator, allowed_border)`` of an anchor head that trains on inside anchors only (mmdet raises on an
    image without any: the anchor filter skips such images), else None."""
    train_cfg = model.get('train_cfg') or {}
    for head_key, head_train_cfg in (('rpn_head', train_cfg.get('rpn')), ('bbox_head', train_cfg)):
        head = model.get(head_key)
        if isinstance(head, dict) and isinstance(head_train_cfg, dict) and 'anchor_generator' in head:
            border = head_train_cfg.get('allowed_border')
            if border is not None and border >= 0:
                return head['anchor_generator'], border
    return None


def _train_pipelines(dataset: dict):
    if isinstance(dataset, dict):
        if 'pipeline' in dataset:
            yield dataset['pipeline']
        for key in ('dataset', 'datasets'):
            yield from _train_pipelines(dataset.get(key))
    elif isinstance(dataset, (list, tuple)):
        for item in dataset:
            yield from _train_pipelines(item)


def _loads(obj):
    """Every ``LoadImageFromFile`` dict in a config tree."""
    if isinstance(obj, dict):
        if obj.get('type') == 'LoadImageFromFile':
            yield obj
        for value in obj.values():
            yield from _loads(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _loads(value)


@pytest.mark.parametrize('name', TRAINING)
def test_shipped_config_states_the_runs_safety(name):
    cfg = Config.fromfile(str(REPO / name)).to_dict()
    hooks = cfg['default_hooks']
    for key, hook_type in SAFETY.items():
        assert hooks.get(key, {}).get('type') == hook_type, (key, hooks.get(key))
    assert isinstance(hooks['checkpoint'].get('interval'), int), 'the checkpoint interval is stated (default: never)'
    assert 'mmrevcol' in cfg['custom_imports']['imports']  # the hook types are mmrevcol's

    head = _anchor_head(cfg['model'])
    for pipeline in _train_pipelines(cfg['train_dataloader']['dataset']):
        types = [t['type'] for t in pipeline]
        if head is None:
            assert 'SkipImagesWithoutAnchors' not in types
            continue
        assert types[-2:] == ['SkipImagesWithoutAnchors', 'PackDetInputs'], types
        assert pipeline[-2] == dict(type='SkipImagesWithoutAnchors', anchor_generator=head[0], allowed_border=head[1])

    run = {k: cfg.get(k) for k in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'tta_pipeline')}
    loads = list(_loads(run))
    assert loads and all(t.get('color_type') == POLICY for t in loads), loads


def test_anchor_configs_are_the_expected_ones():
    """The rule above is not vacuous: the Cascade (RPN, allowed_border=0) configs carry the filter, RetinaNet and
    Mask R-CNN (allowed_border=-1) do not need it."""
    for name, expected in [(DET, True), ('configs/cascade_revcol_l_coco.py', True),
                           ('configs/hiri_vit/cascade_hiri_vit_s_coco.py', True), ('configs/retinanet_revcol_t_coco.py', False),
                           ('configs/hiri_vit/mask_rcnn_hiri_vit_s_coco.py', False), (SEG, False)]:
        assert (_anchor_head(Config.fromfile(str(REPO / name)).to_dict()['model']) is not None) == expected, name
    mini = Config.fromfile(str(REPO / 'configs/acceptance/cascade_revcol_coco_mini_person.py'))
    assert mini.train_dataloader.dataset.pipeline[-2].anchor_generator.scales == [8]  # its own anchors, not the demo's


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _load_cfg_logging(config: str, work_dir: Path):
    """``tools/train.py``'s ``load_cfg`` (tools/test.py's too) and the records it logs through mmengine's logger."""
    train = load_tool('train')
    logger, handler = MMLogger.get_current_instance(), _Records()
    logger.addHandler(handler)
    try:
        cfg = train.load_cfg(train.parse_args([config, '--work-dir', str(work_dir)]))
    finally:
        logger.removeHandler(handler)
    return cfg, [r for r in handler.records if 'does not state' in r.getMessage()]


def test_a_config_without_the_safety_hooks_gets_one_warning_and_nothing_added(tmp_path):
    user = tmp_path / 'my_upernet.py'
    user.write_text("_base_ = ['mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/default_runtime.py', "
                    "'mmseg::_base_/schedules/schedule_20k.py']\n"
                    "custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)\n")
    cfg, warnings = _load_cfg_logging(str(user), tmp_path / 'w')
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING, warnings
    message = warnings[0].getMessage()
    assert '\n' not in message and str(REPO / 'configs/_base_/runtime/safety.py') in message
    assert 'default_hooks = _base_.safety_hooks' in message and all(t in message for t in SAFETY.values())
    assert cfg.default_hooks.checkpoint.type == 'CheckpointHook'  # nothing injected
    assert not cfg.get('custom_hooks') and set(cfg.default_hooks).isdisjoint({'nan_guard', 'checkpoint_loading'})
    assert _load_cfg_logging(str(REPO / SEG), tmp_path / 'w')[1] == []  # a shipped config: no warning
