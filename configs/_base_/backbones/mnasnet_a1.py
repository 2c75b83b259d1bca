# MnasNet-A1 (timm's `semnasnet_100`: the searched A1 with squeeze-excitation; Tan et al. CVPR 2019): 3.9M params /
# 312M MACs / 75.2% ImageNet-1k top-1 in the paper, through mmpretrain's TIMMBackbone (features_only, strides
# 4/8/16/32). pretrained=False: no download is attempted; for ImageNet weights set
# model.backbone.pretrained=True (timm fetches them from the Hugging Face hub).
backbone = dict(type='mmpretrain.TIMMBackbone', model_name='semnasnet_100', features_only=True, pretrained=False,
                out_indices=(1, 2, 3, 4))
backbone_channels = [24, 40, 112, 320]
