# EfficientNet-B0 (mmpretrain's EfficientNet; Tan & Le, ICML 2019): 5.3M params / 0.39 GFLOPs / 77.1% ImageNet-1k
# top-1 in the paper (76.74% for mmpretrain's converted TF checkpoint, loaded here). Layers 2-5 are the stages at
# strides 4/8/16/32 (24/40/112/320 channels); drop path 0.2 as mmdet's EfficientNet RetinaNet.
# strict=True: every weight of the backbone is loaded or the run stops naming the keys (mmrevcol's loading policy,
# opt-in for library backbones; without it mmengine's loader only warns).
backbone = dict(
    type='mmpretrain.EfficientNet', arch='b0', drop_path_rate=0.2, out_indices=(2, 3, 4, 5),
    norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01),
    init_cfg=dict(type='Pretrained', prefix='backbone.', strict=True,
                  checkpoint='https://download.openmmlab.com/mmclassification/v0/efficientnet/'
                  'efficientnet-b0_3rdparty_8xb32_in1k_20220119-a7e2a0b1.pth'))
backbone_channels = [24, 40, 112, 320]
