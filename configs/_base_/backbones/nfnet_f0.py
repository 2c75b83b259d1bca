# NFNet-F0 (timm's `dm_nfnet_f0`, DeepMind's weights; Brock et al. ICML 2021): normalizer-free (scaled weight
# standardisation, no BatchNorm), 71.5M params / 12.4 GFLOPs / 83.6% ImageNet-1k top-1 in the paper, through
# mmpretrain's TIMMBackbone (features_only, strides 4/8/16/32). Train it with Adaptive Gradient Clipping
# (optim_wrapper type 'AGCOptimWrapper' / 'AGCAmpOptimWrapper', mmrevcol/engine/agc.py; the NFNet configs clip the
# backbone only). pretrained=False: no download is attempted; for ImageNet weights set
# model.backbone.pretrained=True (Hugging Face hub).
backbone = dict(type='mmpretrain.TIMMBackbone', model_name='dm_nfnet_f0', features_only=True, pretrained=False,
                out_indices=(1, 2, 3, 4))
backbone_channels = [256, 512, 1536, 3072]
