"""Data faults during training (issue #18 rows 3-7): a sample that fails to load names its file(s) in one line (also
from DataLoader workers), or is skipped and counted with ``on_error='skip'``; an out-of-memory error names the batch's
files; a head whose ``num_classes`` differs from the dataset's classes stops the run at start."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS, init_default_scope

import mmrevcol  # noqa: F401
from mmrevcol.demo_data import generate
from mmrevcol.engine.consistency import ClassConsistencyHook, head_num_classes
from mmrevcol.engine.data_errors import DataErrorsHook
from mmrevcol.utils.errors import ConfigConsistencyError, DataError, describe, is_expected

REPO = Path(__file__).resolve().parents[1]
SEG = 'configs/demo/upernet_revcol_demo.py'
DET = 'configs/demo/cascade_revcol_demo.py'
SPLITS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
TINY = dict(arch=dict(channels=[16, 32, 48, 64], layers=[1, 1, 1, 1], num_columns=2))


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return Path(generate(str(tmp_path_factory.mktemp('data') / 'demo'), num_train=4, num_val=2, size=64,
                         verbose=False))


def _seg_cfg(root: Path, **model) -> Config:
    cfg = Config.fromfile(str(REPO / SEG))
    for split in SPLITS:
        cfg[split].dataset.data_root = str(root) + '/'
    cfg.model.backbone.update(TINY)
    cfg.model.decode_head.in_channels = [16, 32, 48, 64]
    cfg.model.auxiliary_head.in_channels = 48
    cfg.merge_from_dict(model)
    return cfg


@pytest.fixture(autouse=True)
def no_active_policy():
    """A DataErrorsHook is active from its construction to its run's end: end it after each test."""
    import mmrevcol.engine.data_errors as module
    from mmrevcol.utils.errors import clear_context
    yield
    module._POLICY = None
    clear_context('batch')


@pytest.fixture
def broken_seg(demo_root, tmp_path):
    """A copy of the demo set whose second label map (in sorted order) is an empty file."""
    import shutil
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    label = sorted((root / 'ann_dir' / 'train').iterdir())[1]
    label.write_bytes(b'')
    return root, label


def _dataset(cfg: Config):
    init_default_scope('mmseg')
    return DATASETS.build(cfg.train_dataloader.dataset)


def test_failing_sample_names_its_files(broken_seg):
    root, label = broken_seg
    DataErrorsHook()
    dataset = _dataset(_seg_cfg(root))
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['seg_map_path'] == str(label))
    with pytest.raises(DataError) as info:
        dataset[index]
    message = str(info.value)
    assert message.startswith(f'cannot load sample {index} of BaseSegDataset (img_path=') and \
        f'seg_map_path={label}' in message, message
    assert '\n' not in message and is_expected(info.value)

    # ... also through DataLoader workers, whose errors come back wrapped with the worker's traceback
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=lambda x: x,
                                         sampler=[index])
    with pytest.raises(DataError) as info:
        next(iter(loader))
    line = describe(info.value)
    assert line.startswith(f'cannot load sample {index} of BaseSegDataset') and str(label) in line, line
    assert 'Traceback' not in line and 'worker' not in line, line


def test_without_the_hook_nothing_changes(broken_seg):
    root, label = broken_seg
    dataset = _dataset(_seg_cfg(root))
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['seg_map_path'] == str(label))
    with pytest.raises(Exception) as info:
        dataset[index]
    assert not isinstance(info.value, DataError)  # mmseg's own error, as without mmrevcol


def test_skip_policy_counts_across_workers(broken_seg):
    root, label = broken_seg
    hook = DataErrorsHook(on_error='skip')
    dataset = _dataset(_seg_cfg(root))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=lambda x: x)
    samples = [s for batch in loader for s in batch]
    assert len(samples) == len(dataset)  # the broken one was replaced by another sample
    assert all(str(s['data_samples'].seg_map_path) != str(label) for s in samples)
    assert hook.policy.skipped.value == 1  # counted in a worker, seen here
    limited = DataErrorsHook(on_error='skip', max_skips=0)
    with pytest.raises(DataError, match='more than max_skips=0 samples failed to load; the last: sample'):
        [s for batch in torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=lambda x: x) for s in batch]
    assert limited.policy.skipped.value == 1


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="on_error must be one of \\('raise', 'skip'\\)"):
        DataErrorsHook(on_error='ignore')
    with pytest.raises(TypeError, match='max_skips must be an int >= 0 or None'):
        DataErrorsHook(max_skips=1.5)
    with pytest.raises(TypeError, match='allow_mismatch must be True or False'):
        ClassConsistencyHook(allow_mismatch='yes')


def test_out_of_memory_names_the_batch_files():
    from mmengine.structures import BaseDataElement

    class Runner:
        iter = 11

    hook = DataErrorsHook()
    samples = [BaseDataElement(metainfo=dict(img_path=f'/data/img_{i}.jpg')) for i in range(2)]
    hook.before_train_iter(Runner(), 0, dict(inputs=None, data_samples=samples))
    error = torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')
    line = describe(error)
    assert is_expected(error)
    assert line.startswith('out of memory (OutOfMemoryError: CUDA out of memory') and \
        'training iteration 12: /data/img_0.jpg, /data/img_1.jpg' in line, line


# ----------------------------------------------------------------------------------------------------------------
def test_num_classes_mismatch_stops_at_start(demo_root, tmp_path):
    from mmengine.runner import Runner
    cfg = _seg_cfg(demo_root, **{'model.decode_head.num_classes': 19, 'model.decode_head.loss_decode.class_weight':
                                 None})
    cfg.work_dir = str(tmp_path)
    cfg.default_hooks.consistency = dict(type='ClassConsistencyHook')
    cfg.train_cfg.max_iters = 2
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ConfigConsistencyError) as info:
        runner.train()
    message = str(info.value)
    assert message.startswith('model.decode_head.num_classes=19 but the train dataset (BaseSegDataset) has 4 '
                              "classes ('background', 'circle', 'square', 'triangle'): set "
                              'model.decode_head.num_classes to 4'), message
    assert 'auxiliary_head' not in message and 'allow_mismatch=True' in message
    assert runner.iter == 0 and not list(tmp_path.glob('*.pth'))


def test_num_classes_of_every_det_head(demo_root):
    cfg = Config.fromfile(str(REPO / DET))
    cfg.model.backbone.update(TINY)
    cfg.model.neck.in_channels = [16, 32, 48, 64]
    init_default_scope('mmdet')
    heads = dict(head_num_classes(MODELS.build(cfg.model)))
    assert heads == {f'model.roi_head.bbox_head[{i}].num_classes': 3 for i in range(3)} | {
        f'model.roi_head.mask_head[{i}].num_classes': 3 for i in range(3)}, heads  # RPN (class-agnostic) skipped


def test_allow_mismatch_logs_instead(demo_root, tmp_path):
    from mmengine.runner import Runner
    cfg = _seg_cfg(demo_root, **{'model.auxiliary_head.num_classes': 5})
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner._train_loop = runner.build_train_loop(runner._train_loop)  # what Runner.train does before before_run
    ClassConsistencyHook(allow_mismatch=True).before_run(runner)  # no error
    log = ''.join(p.read_text() for p in tmp_path.glob('*/*.log'))
    assert re.search(r'ClassConsistencyHook \(allow_mismatch=True\): model.auxiliary_head.num_classes=5 but the '
                     r'train dataset', log), log[-2000:]
    with pytest.raises(ConfigConsistencyError, match='auxiliary_head'):
        ClassConsistencyHook().before_run(runner)
