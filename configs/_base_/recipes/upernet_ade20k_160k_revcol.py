# UPerNet 160k on ADE20K, 512x512 crops, the official RevCol recipe (Segmentation/ of megvii-research/RevCol) on
# mmseg 1.x: upernet_ade20k_160k_adamw.py (mmseg's ConvNeXt data, heads, schedule, slide test; AdamW lr 6e-5 wd 0.01,
# AMP) with RevCol's layer-wise lr decay, rate 1.0 (= none, but the constructor still exempts 1-D params, biases and
# alphas from weight decay).
_base_ = './upernet_ade20k_160k_adamw.py'
optim_wrapper = dict(constructor='RevColLayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(_delete_=True, decay_rate=1.0, decay_type='layer_wise'))
