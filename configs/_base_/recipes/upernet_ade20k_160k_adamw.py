# UPerNet 160k on ADE20K, 512x512 crops (upernet_ade20k_160k.py: data, heads, schedule, slide test) with the
# optimizer of the official RevCol segmentation recipe and no layer-wise lr decay: AdamW lr 6e-5 wd 0.01, AMP, no
# weight decay on norms and biases. The recipe of the backbone-zoo UPerNets (configs/classic/).
_base_ = './upernet_ade20k_160k.py'
optim_wrapper = dict(_delete_=True, type='AmpOptimWrapper',
                     optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0), loss_scale='dynamic')
