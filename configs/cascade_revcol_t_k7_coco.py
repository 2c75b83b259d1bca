# RevCol-T Cascade Mask R-CNN 3x with 7x7 depthwise kernels (paper appendix D.3.1): the 3x3 ImageNet checkpoint
# is kernel-padded on load by the backbone itself (3x3 weights in the centre, new entries ~ N(0, 1e-7)).
_base_ = './cascade_revcol_t_coco.py'
model = dict(backbone=dict(kernel_size=7))
