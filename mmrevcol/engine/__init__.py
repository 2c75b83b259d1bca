from .agc import AGCAmpOptimWrapper, AGCOptimWrapper, adaptive_clip_grad_, unitwise_norm
from .checkpoint_loading import CheckpointLoadingHook, ensure_loading_hook
from .consistency import ClassConsistencyHook
from .data_errors import DataErrorsHook
from .ema_distill import EMADistillHook
from .feature_stats import FeatureStatsHook
from .kernel_padding import KernelPaddingHook, pad_kernel, pad_kernels
from .layer_decay import BackboneLayerDecayOptimizerConstructor, RevColLayerDecayOptimizerConstructor
from .nan_guard import NonFiniteLossError, NonFiniteLossHook
from .preemption import PreemptionHook
from .safe_checkpoint import SafeCheckpointHook
from .sparsity import DynamicSparsityHook
from .work_dir_lock import WorkDirLockHook

__all__ = [
    'AGCAmpOptimWrapper', 'AGCOptimWrapper', 'adaptive_clip_grad_', 'unitwise_norm', 'CheckpointLoadingHook',
    'ensure_loading_hook', 'EMADistillHook', 'KernelPaddingHook', 'pad_kernel', 'pad_kernels',
    'RevColLayerDecayOptimizerConstructor',
    'BackboneLayerDecayOptimizerConstructor', 'DynamicSparsityHook', 'NonFiniteLossError', 'NonFiniteLossHook',
    'SafeCheckpointHook', 'PreemptionHook', 'WorkDirLockHook', 'DataErrorsHook', 'ClassConsistencyHook',
    'FeatureStatsHook'
]
