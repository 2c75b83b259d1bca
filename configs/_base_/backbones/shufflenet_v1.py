# ShuffleNet V1 1x, g=3 (mmpretrain's ShuffleNetV1; Zhang et al. CVPR 2018): ~140 MFLOPs, 1.9M params with the
# classifier, 67.4% ImageNet-1k top-1 in the paper (68.13% for mmpretrain's checkpoint, loaded here).
# Stages at strides 8/16/32 only (stride 4 is the stem's max-pool): detectors/segmentors take 3 levels.
# strict=True: every weight of the backbone is loaded or the run stops naming the keys (mmrevcol's loading policy,
# opt-in for library backbones; without it mmengine's loader only warns).
backbone = dict(
    type='mmpretrain.ShuffleNetV1', groups=3, widen_factor=1.0, out_indices=(0, 1, 2),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    init_cfg=dict(type='Pretrained', prefix='backbone.', strict=True,
                  checkpoint='https://download.openmmlab.com/mmclassification/v0/shufflenet_v1/'
                  'shufflenet_v1_batch1024_imagenet_20200804-5d6cec73.pth'))
backbone_channels = [240, 480, 960]
