import os
import os.path as osp
import platform
import shutil
import sys
import warnings

from setuptools import find_packages, setup


def get_version() -> str:
    with open('mmrevcol/version.py') as f:
        scope: dict = {}
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension():
    """Put ``tools`` and ``configs`` into ``mmrevcol/.mim`` so that ``mim train/test mmrevcol CONFIG`` finds them
    in an installed package, as OpenMMLab packages do (mmdet's setup.py): links for an editable install, copies
    when a wheel or an sdist is built."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:  # pip install -e . (legacy / PEP 660)
        mode = 'copy' if platform.system() == 'Windows' else 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:  # pip install . / python -m build
        mode = 'copy'
    else:
        return

    repo_path = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo_path, 'mmrevcol', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for filename in ['tools', 'configs', 'model-index.yml']:
        src_path = osp.join(repo_path, filename)
        tar_path = osp.join(mim_path, filename)
        if not osp.exists(src_path):
            continue
        if osp.isfile(tar_path) or osp.islink(tar_path):
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)
        if mode == 'symlink':
            os.symlink(osp.relpath(src_path, osp.dirname(tar_path)), tar_path)
        elif osp.isdir(src_path):
            shutil.copytree(src_path, tar_path, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        elif osp.isfile(src_path):
            shutil.copyfile(src_path, tar_path)
        else:
            warnings.warn(f'cannot copy {src_path}')


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmrevcol',
        version=get_version(),
        description='RevCol (Reversible Column Networks) backbones for OpenMMLab 3.x detection and segmentation',
        packages=find_packages(include=['mmrevcol', 'mmrevcol.*']),
        include_package_data=True,  # mmrevcol/.mim (MANIFEST.in)
        python_requires='>=3.9',
        license='Apache-2.0',
    )
