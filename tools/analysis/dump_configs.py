"""Dump configs fully resolved (every ``_base_`` merged), as sorted JSON: to compare what runs, not how it is written.

    python tools/analysis/dump_configs.py configs --out before.json          # every config under configs/
    python tools/analysis/dump_configs.py configs/slak/*.py --out slak.json
    python tools/analysis/dump_configs.py configs --out after.json --diff before.json

``--diff`` prints, per config, the keys whose resolved values differ from an earlier dump (e.g. before a refactor of
the config files): the refactor is honest when the only differences are the ones it meant.
"""
import argparse
import json
import os.path as osp
import sys
from glob import glob

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

from mmengine.config import Config  # noqa: E402

from mmrevcol.utils.cli import run_tool  # noqa: E402

# Helper variables of the config files (channels lists, pretrained paths, ...) are not part of the run.
RUN_KEYS = ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg', 'val_cfg', 'test_cfg', 'train_dataloader',
            'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator', 'default_hooks',
            'custom_hooks', 'env_cfg', 'default_scope', 'custom_imports', 'auto_scale_lr', 'randomness',
            'load_from', 'resume', 'log_processor', 'visualizer', 'model_wrapper_cfg', 'launcher', 'work_dir')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('paths', nargs='+', help='config files or folders (searched recursively, _base_ skipped)')
    p.add_argument('--out', required=True, help='JSON file to write')
    p.add_argument('--all-keys', action='store_true', help='keep helper variables too, not only what a run reads')
    p.add_argument('--diff', help='an earlier dump: print what differs, per config')
    return p.parse_args(argv)


def config_files(paths):
    files = []
    for path in paths:
        if osp.isdir(path):
            files += [f for f in glob(osp.join(path, '**', '*.py'), recursive=True) if '_base_' not in f.split(osp.sep)]
        else:
            files.append(path)
    return sorted(set(files))


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def resolve(path: str, all_keys: bool = False) -> dict:
    cfg = Config.fromfile(path).to_dict()
    if not all_keys:
        cfg = {k: v for k, v in cfg.items() if k in RUN_KEYS}
    return _plain(cfg)


def differences(old, new, prefix=''):
    """Flat ``key: (old, new)`` of every leaf that differs (a missing side is ``'<absent>'``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = {}
        for key in sorted(set(old) | set(new)):
            out.update(differences(old.get(key, '<absent>'), new.get(key, '<absent>'), f'{prefix}{key}.'))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = {}
        for i, (a, b) in enumerate(zip(old, new)):
            out.update(differences(a, b, f'{prefix}{i}.'))
        return out
    return {} if old == new else {prefix.rstrip('.'): (old, new)}


def main(argv=None) -> int:
    args = parse_args(argv)
    dump, failed = {}, {}
    for path in config_files(args.paths):
        try:
            dump[path] = resolve(path, args.all_keys)
        except Exception as e:  # a config that does not resolve is itself a finding
            failed[path] = f'{type(e).__name__}: {e}'
    with open(args.out, 'w') as f:
        json.dump(dict(configs=dump, failed=failed), f, indent=1, sort_keys=True)
    print(f'{len(dump)} configs resolved, {len(failed)} failed -> {args.out}')
    for path, err in failed.items():
        print(f'  FAILED {path}: {err}')
    if args.diff:
        with open(args.diff) as f:
            before = json.load(f)['configs']
        for path in sorted(set(before) | set(dump)):
            if path not in dump or path not in before:
                print(f'{path}: only in {"the earlier dump" if path in before else "this dump"}')
                continue
            diff = differences(before[path], dump[path])
            if diff:
                print(f'{path}: {len(diff)} differences')
                for key, (a, b) in diff.items():
                    print(f'    {key}: {a!r} -> {b!r}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
