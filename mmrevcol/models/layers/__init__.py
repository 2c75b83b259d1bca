from .cuda_graph import cuda_graphs_enabled, disable_cuda_graphs, enable_cuda_graphs
from .large_kernel import LargeKernelConv, choose_impl, depthwise_conv2d, depthwise_conv2d_multi
from .norm import LayerNorm2d
from .triton_dwconv import depthwise_conv2d_triton

__all__ = [
    'LargeKernelConv', 'LayerNorm2d', 'choose_impl', 'cuda_graphs_enabled', 'depthwise_conv2d',
    'depthwise_conv2d_multi', 'depthwise_conv2d_triton', 'disable_cuda_graphs', 'enable_cuda_graphs'
]
