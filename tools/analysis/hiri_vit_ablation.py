"""Renamed to ``tools/analysis/ablation_hiri_vit.py`` (tools are named ``<kind>_<what>.py``); this path stays an
alias with the same arguments and functions."""
import os.path as osp
import runpy

_NEW = osp.join(osp.dirname(osp.abspath(__file__)), 'ablation_hiri_vit.py')

if __name__ == '__main__':
    runpy.run_path(_NEW, run_name='__main__')
else:  # imported by path (scripts, tests): the same functions
    globals().update({k: v for k, v in runpy.run_path(_NEW).items() if not k.startswith('__')})
