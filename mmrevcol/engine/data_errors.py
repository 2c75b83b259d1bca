"""A sample that fails to load or transform is named: its file(s) in one line, or skipped and counted.

An unreadable file, a zero-size image or an out-of-memory on one huge image fail deep inside cv2, mmcv, mmdet or
mmseg with a traceback that never names the file (in a DataLoader worker, wrapped once more). With
:class:`DataErrorsHook` in the config, every ``BaseDataset.prepare_data`` (what ``__getitem__`` runs: read the
annotation, run the pipeline) of the process:

* ``on_error='raise'`` (default): re-raises the failure as :class:`~mmrevcol.utils.errors.DataError` —
  ``cannot load sample 12 of CocoDataset (img_path=.../000123.jpg, seg_map_path=None): AttributeError: ...``;
* ``on_error='skip'``: logs one warning naming the file and returns ``None``, which mmengine's dataset answers by
  loading another (random) sample, as for images a transform rejects; the skipped samples are counted over all
  DataLoader workers, logged when the count changes and at the end of training, and stored as
  ``train/skipped_samples`` in the message hub. ``max_skips`` turns a flood of failures into an error. Evaluation
  datasets (``test_mode=True``) never skip: a metric over a silently smaller set would be wrong.

The hook also notes the files of the batch in progress, so that an out-of-memory error in the model names them
(:func:`mmrevcol.utils.errors.note_context`).

The patch is installed when the hook is built — before the Runner builds its data loaders, so forked workers have
it — and does nothing while no such hook is active (after ``after_run``); datasets that override
``prepare_data`` itself are not covered.
"""
import multiprocessing
from typing import List, Optional

from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..utils.errors import DataError, clear_context, note_context
from .hook_args import check_choice, check_int

__all__ = ['DataErrorsHook', 'sample_files']

_ORIGINAL_PREPARE = BaseDataset.prepare_data


class _Policy:
    def __init__(self, on_error: str, max_skips: Optional[int]):
        self.on_error = on_error
        self.max_skips = max_skips
        self.skipped = multiprocessing.Value('q', 0)  # shared with forked DataLoader workers

    def count_skip(self) -> int:
        with self.skipped.get_lock():
            self.skipped.value += 1
            return self.skipped.value


_POLICY: Optional[_Policy] = None


def sample_files(dataset, idx: int) -> str:
    """``key=path`` of the files of sample ``idx`` of ``dataset`` (``img_path``, ``seg_map_path``, ...)."""
    try:
        info = dataset.get_data_info(idx)
    except Exception:  # noqa: BLE001  the annotation itself may be what fails
        return ''
    if not isinstance(info, dict):
        return ''
    items = [f'{key}={value}' for key, value in info.items()
             if isinstance(value, str) and ('path' in key or key in ('filename', 'file_name'))]
    return ', '.join(items)


def _short(error: BaseException) -> str:
    text = ' '.join(str(error).split())
    text = text if len(text) <= 300 else text[:297] + '...'
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _prepare_data(self, idx):
    policy = _POLICY
    if policy is None:
        return _ORIGINAL_PREPARE(self, idx)
    try:
        return _ORIGINAL_PREPARE(self, idx)
    except DataError:
        raise  # a wrapped dataset already named it
    except Exception as e:  # noqa: BLE001  any failure of reading / transforming this sample
        files = sample_files(self, idx)
        where = f'sample {idx} of {type(self).__name__}' + (f' ({files})' if files else '')
        if policy.on_error == 'skip' and not getattr(self, 'test_mode', False):
            count = policy.count_skip()
            if policy.max_skips is not None and count > policy.max_skips:
                raise DataError(f'more than max_skips={policy.max_skips} samples failed to load; the last: '
                                f'{where}: {_short(e)}') from e
            print_log(f'DataErrorsHook: skipped {where}: {_short(e)}', logger='current', level=30)
            return None  # mmengine's dataset loads another sample
        raise DataError(f'cannot load {where}: {_short(e)}') from e


def _install() -> None:
    """Route ``BaseDataset.prepare_data`` through :func:`_prepare_data` (a pass-through while no hook is active).

    Done when the first hook is built, not at import: importing mmrevcol changes nothing of mmengine.
    """
    if BaseDataset.prepare_data is not _prepare_data:
        BaseDataset.prepare_data = _prepare_data


def _batch_files(data_batch, limit: int = 8) -> List[str]:
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    files = []
    for sample in samples or []:
        meta = getattr(sample, 'metainfo', None) or (sample if isinstance(sample, dict) else {})
        path = meta.get('img_path') if isinstance(meta, dict) else None
        if path:
            files.append(str(path))
    return files[:limit] + (['...'] if len(files) > limit else [])


@HOOKS.register_module()
class DataErrorsHook(Hook):
    """Name (or skip and count) the samples that fail to load or transform (see the module doc).

    Args:
        on_error (str): ``'raise'`` (a :class:`~mmrevcol.utils.errors.DataError` naming the file(s)) or
            ``'skip'`` (log, count, load another sample). Defaults to 'raise'.
        max_skips (int, optional): With ``'skip'``, stop with an error once more samples than this were skipped.
            Defaults to None (no limit).
    """
    priority = 'VERY_HIGH'

    def __init__(self, on_error: str = 'raise', max_skips: Optional[int] = None):
        name = type(self).__name__
        self.on_error = check_choice(name, 'on_error', on_error, ('raise', 'skip'))
        self.max_skips = check_int(name, 'max_skips', max_skips, minimum=0, allow_none=True)
        self.policy = _Policy(self.on_error, self.max_skips)
        self._logged = 0
        _install()
        self._activate()  # before the Runner builds its data loaders (forked workers copy the policy)

    def _activate(self) -> None:
        global _POLICY
        _POLICY = self.policy

    def before_run(self, runner) -> None:
        self._activate()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        files = _batch_files(data_batch)
        if files:
            note_context('batch', f'training iteration {runner.iter + 1}: {", ".join(files)}')

    def before_val_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        files = _batch_files(data_batch)
        if files:
            note_context('batch', f'validation batch {batch_idx + 1}: {", ".join(files)}')

    before_test_iter = before_val_iter

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        clear_context('batch')
        skipped = self.policy.skipped.value
        runner.message_hub.update_scalar('train/skipped_samples', skipped)
        if skipped != self._logged:
            runner.logger.warning(f'DataErrorsHook: {skipped} sample(s) skipped so far (on_error=skip; each is '
                                  'named in a warning above)')
            self._logged = skipped

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        clear_context('batch')

    after_test_iter = after_val_iter

    def after_train(self, runner) -> None:
        if self.on_error == 'skip':
            runner.logger.info(f'DataErrorsHook: {self.policy.skipped.value} sample(s) skipped during training')

    def after_run(self, runner) -> None:
        global _POLICY
        clear_context('batch')
        if _POLICY is self.policy:
            _POLICY = None
