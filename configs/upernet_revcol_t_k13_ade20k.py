# RevCol-T UPerNet 160k on ADE20K with 13x13 depthwise kernels (paper appendix D.3.1): the 3x3 ImageNet
# checkpoint is kernel-padded on load by the backbone itself (3x3 centre, new entries ~ N(0, 1e-7)).
_base_ = './upernet_revcol_t_ade20k.py'
model = dict(backbone=dict(kernel_size=13))
