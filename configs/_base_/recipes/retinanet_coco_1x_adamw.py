# RetinaNet 1x on COCO (retinanet_coco_1x.py) with its AdamW and no layer-wise lr decay: no weight decay on norms
# and biases. The recipe of the backbone-zoo RetinaNets (configs/classic/).
_base_ = './retinanet_coco_1x.py'
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=_base_.optim_wrapper.optimizer,
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0), clip_grad=None)
