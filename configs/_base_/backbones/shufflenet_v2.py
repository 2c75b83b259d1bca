# ShuffleNet V2 1x (mmpretrain's ShuffleNetV2; Ma et al. ECCV 2018): 146 MFLOPs, 2.3M params with the classifier,
# 69.4% ImageNet-1k top-1 in the paper (69.55% for mmpretrain's checkpoint, loaded here). Strides 8/16/32.
# strict=True: every weight of the backbone is loaded or the run stops naming the keys (mmrevcol's loading policy,
# opt-in for library backbones; without it mmengine's loader only warns).
backbone = dict(
    type='mmpretrain.ShuffleNetV2', widen_factor=1.0, out_indices=(0, 1, 2),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    init_cfg=dict(type='Pretrained', prefix='backbone.', strict=True,
                  checkpoint='https://download.openmmlab.com/mmclassification/v0/shufflenet_v2/'
                  'shufflenet_v2_batch1024_imagenet_20200812-5bf4721e.pth'))
backbone_channels = [116, 232, 464]
