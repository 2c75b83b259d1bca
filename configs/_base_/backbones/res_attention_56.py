# Residual Attention Network, Attention-56 (mmrevcol's ResidualAttentionNet, Wang et al. CVPR 2017): 31.9M params /
# 6.2 GFLOPs (with the classifier) / 78.2% ImageNet-1k top-1 in the paper. Outputs at strides 4/8/16/32.
# No public ImageNet checkpoint exists in this layout: init_cfg=None trains from scratch; to load one, set
# init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resattnet56.pth', prefix='backbone.') (strict).
backbone = dict(
    type='ResidualAttentionNet',
    arch='56',
    attention='mixed',
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),  # BN when not distributed (mmengine) or without CUDA
    init_cfg=None)
backbone_channels = [256, 512, 1024, 2048]
