"""The reversible engine of RevCol: all the invertible-column math lives here.

A column ``i > 0`` maps the previous column's levels ``c = (c0, c1, c2, c3)`` to

    c'_l = alpha_l * c_l + o_l,    o_l = Level_l(c'_{l-1}, c_{l+1}, ...)   (c'_{-1} is the stem output x)

so the previous column is recovered exactly from the next one, level 3 first:

    c_l = (c'_l - o_l) / alpha_l

Reconstruction divides rounding errors by alpha at every column it walks back. The reversible stream therefore
keeps the column states c in float64 (the levels still compute in ``x.dtype``), so the subtraction loses nothing;
the extra memory is two columns' states, independent of the number of columns. Measured (fp32, 8 columns): gradients
within 2e-6 relative of plain autograd for alpha >= 0.1. For tiny alpha the fp32 recomputation itself is the limit
(one-ulp differences in a level's output, amplified by 1/alpha per column): at alpha = 0.01 and 8 columns some
gradients are wrong by O(1), as in the official code; the 1e-3 clamp only prevents division by zero.

:func:`reversible_columns` runs a stack of columns without keeping any of their activations: one autograd
Function per column (:class:`ReversibleColumn`), chained, sharing a tape that holds a single column's states.
Forward keeps only the stem output ``x`` and the current column's states; backward walks the columns (and,
inside a column, the levels 3 -> 0) in reverse, recomputes one level at a time with autograd, reconstructs the
previous column's levels on the tape and hands their gradients on. Peak memory is one level's graph, two
columns' states and one column's parameter gradients, whatever the number of columns, unlike the official
``ReverseFunction`` which keeps every column's outputs alive.

Parameters are explicit inputs of each column's Function and their gradients are returned by its ``backward``
rather than accumulated behind autograd's back, so DDP (``find_unused_parameters`` True or False) sees every
parameter used, its buckets fill column by column, and ``torch.autograd.grad`` w.r.t. parameters works.
What does not work: double backward / ``create_graph=True`` (a reversible backward cannot be differentiated
again) and ``torch.autograd.grad`` w.r.t. intermediate activations inside the stack (they do not exist).
``torch.compile`` works but graph-breaks at the Function: the reversible columns run eagerly. Inference
(``torch.no_grad`` or nothing requiring grad) bypasses the Function entirely.
"""
import threading
from contextlib import contextmanager, nullcontext
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

ALPHA_MIN = 1e-3

# Set while ReversibleColumn.backward recomputes a level (thread-local: on CUDA, backward runs on a device thread).
_recompute = threading.local()


def in_recomputation() -> bool:
    """True while the reversible backward recomputes a level's forward (its values equal the forward's).

    For forward hooks that count, log or accumulate per call (e.g. :class:`mmrevcol.engine.FeatureStatsHook`): they
    can skip the second call of a module instead of counting it twice.
    """
    return getattr(_recompute, 'depth', 0) > 0


@contextmanager
def _recomputing():
    _recompute.depth = getattr(_recompute, 'depth', 0) + 1
    try:
        yield
    finally:
        _recompute.depth -= 1


def _clamped(alpha: Tensor, min_abs: float) -> Tensor:
    return torch.where(alpha < 0, alpha.clamp(max=-min_abs), alpha.clamp(min=min_abs))


def clamp_abs_(alpha: Tensor, min_abs: float = ALPHA_MIN) -> Tensor:
    """Clamp ``|alpha| >= min_abs`` in place, keeping the sign; ``0`` becomes ``+min_abs``.

    The official code multiplies by ``alpha.sign()``, which maps an exact zero back to zero and makes the
    column non-invertible.
    """
    with torch.no_grad():
        alpha.copy_(_clamped(alpha, min_abs))
    return alpha


def clamp_abs(alpha: Tensor, min_abs: float = ALPHA_MIN) -> Tensor:
    """``|alpha| >= min_abs`` as :func:`clamp_abs_` computes it, functionally, with an identity gradient.

    What every forward uses. The official code clamps ``alpha.data`` in place before each forward, so its
    gradient w.r.t. alpha is the unclamped one: the straight-through form reproduces that, without mutating a
    parameter inside ``forward`` (which ``torch.export``, the dynamo ONNX exporter and ``torch.compile`` reject
    or trace badly). For ``|alpha| >= min_abs`` (always, unless training drives it below) the result is
    ``alpha`` itself, bit for bit.
    """
    with torch.no_grad():  # no graph (nor saved tensors) for the clamp itself
        delta = _clamped(alpha, min_abs) - alpha
    return alpha + delta


# --------------------------------------------------------------------------------------------------------------
# One column, level by level. ``column.levels[l]`` takes ``(down_input, *prev_inputs)`` where ``prev_inputs`` are
# the previous column's levels listed in ``column.prev_inputs(l)``; a first column has none.
# --------------------------------------------------------------------------------------------------------------


def level_inputs(column: nn.Module, level: int, x: Tensor, new: Sequence[Tensor],
                 prev: Optional[Sequence[Tensor]]) -> Tuple[Tensor, ...]:
    down = x if level == 0 else new[level - 1]
    if prev is None:
        return (down, )
    return (down, ) + tuple(prev[j] for j in column.prev_inputs(level))


def column_forward(column: nn.Module, x: Tensor, prev: Optional[Sequence[Tensor]]) -> List[Tensor]:
    """Plain forward of one column; ``prev`` is None for the first column."""
    new: List[Tensor] = []
    for level, module in enumerate(column.levels):
        out = module(*level_inputs(column, level, x, new, prev))
        # addcmul: one pass over the level instead of a multiply and an add
        new.append(out if prev is None else torch.addcmul(out, prev[level], clamp_abs(column.alpha[level])))
    return new


def exact_column_forward(column: nn.Module, x: Tensor, prev: Optional[Sequence[Tensor]],
                         prev_low: Optional[Sequence[Tensor]], state_dtype: torch.dtype,
                         rng_states: Optional[list] = None) -> Tuple[List[Tensor], List[Tensor]]:
    """Forward of one column of the reversible stream: returns its levels in ``state_dtype`` (exact, for the
    reconstruction) and in ``x.dtype`` (``low``: what the levels compute with, cast once per state)."""
    states: List[Tensor] = []
    lows: List[Tensor] = []
    for level, module in enumerate(column.levels):
        if rng_states is not None:
            rng_states.append(_RNGState.capture(x.device))
        out = module(*level_inputs(column, level, x, lows, prev_low))
        if prev is None:
            states.append(out.to(state_dtype))
            lows.append(out)
        else:
            c = clamp_abs(column.alpha[level]) * prev[level] + out
            states.append(c)
            lows.append(c.to(x.dtype))
    return states, lows


# --------------------------------------------------------------------------------------------------------------
# RNG and autocast replay: the recomputation in backward must see the same drop-path masks and the same precision.
# --------------------------------------------------------------------------------------------------------------


class _RNGState:
    __slots__ = ('cpu', 'cuda')

    def __init__(self, cpu: Tensor, cuda: Optional[Tensor]):
        self.cpu, self.cuda = cpu, cuda

    @classmethod
    def capture(cls, device: torch.device) -> '_RNGState':
        cuda = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None
        return cls(torch.get_rng_state(), cuda)

    def restore(self, device: torch.device) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, device)


def _state_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == 'mps' else torch.float64  # MPS has no float64


def _autocast_state(device_type: str) -> Optional[Tuple[str, torch.dtype]]:
    if torch.is_autocast_enabled(device_type):
        return device_type, torch.get_autocast_dtype(device_type)
    return None


def _autocast(state: Optional[Tuple[str, torch.dtype]]):
    if state is None:
        return nullcontext()
    return torch.autocast(device_type=state[0], dtype=state[1])


# --------------------------------------------------------------------------------------------------------------
# The Function.
# --------------------------------------------------------------------------------------------------------------


class _Tape:
    """What the chain of :class:`ReversibleColumn` Functions shares instead of saved tensors.

    ``states`` are the exact (``state_dtype``) levels of column ``index``: written by each forward, then, in
    backward, replaced by the reconstructed levels of the previous column. Holding one column's states (not one
    per column, as saved tensors would) is what keeps memory constant in the number of columns.
    """

    def __init__(self):
        self.states: Optional[List[Tensor]] = None  # exact, ``state_dtype``
        self.lows: Optional[List[Tensor]] = None  # the same in the compute dtype
        self.index = -1


class ReversibleColumn(torch.autograd.Function):
    """One column of a reversible stack; chained, they run :func:`reversible_columns`.

    ``apply(column, tape, index, replay_rng, x, *prev, *params)``: ``x`` the stem output, ``prev`` the previous
    column's levels (none for the first column; their values are read from the tape, the tensors only carry
    gradients), ``params`` the column's trainable parameters, whose gradients ``backward`` returns, so autograd
    accumulates them (and fires DDP's hooks) column by column. Returns the column's levels in ``x.dtype``.
    """

    @staticmethod
    def forward(ctx, column, tape, index, replay_rng, x, *args):  # noqa: D102
        num_prev = 0 if column.first else len(column.levels)
        # Unused outputs get None (not zeros) in backward, so parameters that no output depends on keep a None
        # gradient, as under plain autograd (a zero gradient would still be weight-decayed by AdamW).
        ctx.set_materialize_grads(False)
        ctx.column, ctx.tape, ctx.index, ctx.num_prev = column, tape, index, num_prev
        ctx.params = args[num_prev:]
        ctx.autocast = _autocast_state(x.device.type)
        ctx.rng = [] if replay_rng else None
        prev, prev_low = (tape.states, tape.lows) if num_prev else (None, None)
        states, lows = exact_column_forward(column, x, prev, prev_low, _state_dtype(x.device), ctx.rng)
        tape.states, tape.lows, tape.index = states, [t.detach() for t in lows], index
        ctx.save_for_backward(x)
        return tuple(lows)

    @staticmethod
    def backward(ctx, *grad_outputs):  # noqa: D102
        tape, column = ctx.tape, ctx.column
        if tape.index != ctx.index:
            raise RuntimeError('a reversible RevCol graph can be backpropagated only once and in full '
                               '(no retain_graph=True, no partial torch.autograd.grad over its columns)')
        x, = ctx.saved_tensors
        dtype = x.dtype
        cur, cur_low = tape.states, tape.lows
        num_levels = len(cur)
        grads: List[Optional[Tensor]] = list(grad_outputs)
        x_in = x.detach().requires_grad_(ctx.needs_input_grad[4])
        grad_x = None
        first = column.first
        prev: List[Optional[Tensor]] = [None] * num_levels
        prev_low: List[Optional[Tensor]] = [None] * num_levels
        grad_prev: List[Optional[Tensor]] = [None] * num_levels
        param_grads = {id(p): None for p in ctx.params}

        def add(a, b):
            return b if a is None else a + b

        devices = [x.device] if x.device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices, enabled=ctx.rng is not None):
            for level in reversed(range(num_levels)):
                if ctx.rng is not None:
                    ctx.rng[level].restore(x.device)
                down = x_in if level == 0 else cur_low[level - 1].detach().requires_grad_(True)
                ups = [prev_low[j].detach().requires_grad_(True) for j in column.prev_inputs(level)]
                with torch.enable_grad(), _autocast(ctx.autocast), _recomputing():
                    out = column.levels[level](down, *ups)
                g = grads[level]
                if not first:
                    raw_alpha = column.alpha[level]
                    with torch.no_grad():
                        alpha = clamp_abs(raw_alpha)  # as in forward; its gradient goes to raw_alpha unchanged
                        # Reconstruct the previous column's level, then its gradient through the shortcut.
                        prev[level] = (cur[level] - out.to(cur[level].dtype)) / alpha.to(cur[level].dtype)
                        prev_low[level] = prev[level].to(dtype)
                        if g is not None:
                            grad_prev[level] = add(grad_prev[level], alpha * g)
                            if id(raw_alpha) in param_grads:  # d(alpha * c)/d alpha, as plain autograd computes it
                                param_grads[id(raw_alpha)] = (g * prev_low[level]).sum(dim=(0, 2, 3), keepdim=True)
                if g is None:  # no output depends on this level: its parameters and inputs get no gradient
                    del out
                    continue
                params = [p for p in column.levels[level].parameters() if id(p) in param_grads]
                inputs = [t for t in (down, *ups) if t.requires_grad]
                if not inputs and not params:
                    continue
                got = torch.autograd.grad(out, inputs + params, g, allow_unused=True)
                del out
                with torch.no_grad():
                    got_inputs = iter(got[:len(inputs)])
                    if down.requires_grad:
                        gd = next(got_inputs)
                        if level == 0:
                            grad_x = gd
                        elif gd is not None:
                            grads[level - 1] = add(grads[level - 1], gd)
                    for j, gu in zip(column.prev_inputs(level), got_inputs):
                        if gu is not None:
                            grad_prev[j] = add(grad_prev[j], gu)
                    for p, gp in zip(params, got[len(inputs):]):
                        param_grads[id(p)] = gp
        tape.states, tape.lows = (None, None) if first else (prev, prev_low)
        tape.index = ctx.index - 1
        return (None, None, None, None, grad_x, *grad_prev[:ctx.num_prev],
                *(param_grads[id(p)] for p in ctx.params))


def reversible_columns(columns: Sequence[nn.Module], x: Tensor, replay_rng: bool,
                       on_column: Optional[Callable[[int, Tuple[Tensor, ...]], None]] = None) -> List[Tensor]:
    """Run ``columns`` (the first is a first column) reversibly: only ``x`` and one column's states are kept.

    ``replay_rng``: drop path is active, so the RNG state before every level is kept for the recomputation.
    ``on_column(index, levels)`` is called after each column, e.g. to take an intermediate column's output into a
    loss (intermediate supervision): gradients reaching those outputs are added to the ones the next column hands
    back. Only what the callback keeps stays alive, so memory grows with the outputs it takes, not with columns.
    """
    tape = _Tape()
    c: tuple = ()
    for index, column in enumerate(columns):
        params = [p for p in column.parameters() if p.requires_grad]
        c = ReversibleColumn.apply(column, tape, index, replay_rng, x, *c, *params)
        if on_column is not None:
            on_column(index, c)
    return list(c)


def _checkpointed(column: nn.Module):
    # torch.utils.checkpoint wants tensors as positional args and a callable.
    def run(x, *prev):
        return tuple(column(x, prev if prev else None))

    return run


def run_columns(columns: Sequence[nn.Module], x: Tensor, reversible: bool = False, with_cp: bool = False,
                replay_rng: bool = False,
                on_column: Optional[Callable[[int, Sequence[Tensor]], None]] = None) -> List[Tensor]:
    """Run a stack of columns in the cheapest mode that keeps the gradients exact; returns the last column's levels.

    - ``reversible`` and a gradient is wanted: every column but the last through :func:`reversible_columns`; the
      last runs under plain autograd (backward needs its activations at once, recomputing it would save nothing);
    - ``with_cp`` and a gradient is wanted: each column checkpointed (recomputed in backward);
    - otherwise (inference included) plain forwards, with no RNG snapshots.

    ``on_column(index, levels)`` sees every column's output (intermediate supervision, statistics).
    """
    columns = list(columns)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for column in columns for p in column.parameters()))
    notify = on_column or (lambda index, c: None)
    if reversible and needs_grad:
        c = reversible_columns(columns[:-1], x, replay_rng, on_column) if len(columns) > 1 else None
        c = columns[-1](x, c)
        notify(len(columns) - 1, c)
        return list(c)
    if with_cp and needs_grad:
        c: tuple = ()
        for index, column in enumerate(columns):
            c = torch.utils.checkpoint.checkpoint(_checkpointed(column), x, *c, use_reentrant=False)
            notify(index, c)
        return list(c)
    c = None
    for index, column in enumerate(columns):
        c = column(x, c)
        notify(index, c)
    return list(c)
