# ConvNeXt-T (mmpretrain's ConvNeXt, ../../papers/convnext): 28M params, 4.5 GMACs at 224, 82.1% ImageNet-1k top-1.
# The setting of mmdet's/mmseg's ConvNeXt-T configs (layer scale 1.0, no pooling before the final norm, outputs at
# strides 4/8/16/32) with their ImageNet-1k checkpoint. Detector/segmentor configs inherit this fragment and take
#   model = dict(backbone=dict(_base_.backbone, _delete_=True), neck=dict(in_channels=_base_.backbone_channels))
# mmdet's/mmseg's LearningRateDecayOptimizerConstructor numbers ConvNeXt-T's depth ids with num_layers=6 (3 + 9 // 3
# groups, official): the ConvNeXt configs state it in their paramwise_cfg.
# mmpretrain.models is imported by mmrevcol (RevCol builds on its ConvNeXt block), so `mmpretrain.ConvNeXt` resolves.
# strict=True: every weight of the backbone is loaded or the run stops naming the keys (mmrevcol's loading policy,
# opt-in for library backbones; without it mmengine's loader only warns).
backbone = dict(
    type='mmpretrain.ConvNeXt', arch='tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.4, layer_scale_init_value=1.0,
    gap_before_final_norm=False,
    init_cfg=dict(type='Pretrained', prefix='backbone.', strict=True,
                  checkpoint='https://download.openmmlab.com/mmclassification/v0/convnext/downstream/'
                  'convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth'))
backbone_channels = [96, 192, 384, 768]
