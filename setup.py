from setuptools import find_packages, setup


def get_version() -> str:
    with open('mmrevcol/version.py') as f:
        scope: dict = {}
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmrevcol',
    version=get_version(),
    description='RevCol (Reversible Column Networks) backbones for OpenMMLab 3.x detection and segmentation',
    packages=find_packages(include=['mmrevcol', 'mmrevcol.*']),
    python_requires='>=3.9',
    license='Apache-2.0',
)
