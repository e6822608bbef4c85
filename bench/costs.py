"""Machine-independent costs of a sampling run: FLOPs, bytes of weights read, parameters used.

Seconds on a shared 2-core machine swing several-fold with the other processes; these counts do
not. `StageCosts` wraps the methods that make up a sampling chain (ours: gpt.sample,
vqvae.decode, diffusion.sample; MoMask's: its transformers' generate and the RVQ decoder) and
records, per stage:

- GFLOP: matmuls, convolutions and attention (torch's FlopCounterMode, plus formulas for the CPU
  flash-attention kernel and int8 dynamic-quantised linear layers, which it does not know).
- MB of weights read: every op that reads a parameter or buffer of the given models counts the
  bytes it reads (a whole weight matrix for a matmul, only the looked-up rows for an embedding
  or gather); a weight read by 25 decoding steps counts 25 times. This is the traffic that bounds
  small-batch decoding when the weights do not fit in cache.
- parameters in sampling: the elements of every parameter (or packed inference copy of one) read
  at least once. Buffers (codebooks, positional tables) count as weights read, not as parameters.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
GATHER_OPS = {aten.embedding.default, aten.index_select.default, aten.gather.default, aten.index.Tensor}


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """aten._scaled_dot_product_flash_attention_for_cpu on (B, H, S, d) inputs: QK^T and AV."""
    b, h, s_q, d = query
    s_k = key[2]
    return 4 * b * h * s_q * s_k * d


def _dynamic_int8_linear_flops(x, packed, *args, out_shape=None, **kwargs) -> int:
    """quantized::linear_dynamic: 2 * rows * in * out."""
    return 2 * math.prod(x) * out_shape[-1]


def _int8_weight_only_mm_flops(x, weight, scales, *args, out_shape=None, **kwargs) -> int:
    """aten._weight_int8pack_mm: x (M, K) times int8 weight (N, K)^T."""
    return 2 * x[0] * x[1] * weight[0]


def _custom_flop_formulas() -> dict:
    formulas = {}
    if hasattr(aten, "_weight_int8pack_mm"):
        formulas[aten._weight_int8pack_mm] = _int8_weight_only_mm_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_attention_flops
    if hasattr(torch.ops, "quantized") and hasattr(torch.ops.quantized, "linear_dynamic"):
        formulas[torch.ops.quantized.linear_dynamic] = _dynamic_int8_linear_flops
    return formulas


def _storage_key(t: torch.Tensor):
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # quantized or opaque tensors
        return None


def weight_tensors(module: torch.nn.Module) -> list[tuple[torch.Tensor, bool]]:
    """(tensor, counts as a parameter) for a model's parameters, its packed inference copies of
    weights kept in a `_packed` dict (MotionGPT's int8/bf16 copies; build them before counting),
    and its buffers (not parameters)."""
    tensors = [(p, True) for p in module.parameters()]
    for sub in module.modules():
        for _, (weight, scales) in getattr(sub, "_packed", {}).values():  # name -> (key, (weight, scales))
            tensors += [(weight, True)] + ([] if scales is None else [(scales, False)])
    return tensors + [(b, False) for b in module.buffers()]


class WeightReads(TorchDispatchMode):
    """Counts the bytes of `modules`' weights (see weight_tensors) that each op reads."""

    def __init__(self, modules):
        super().__init__()
        self.storages: dict[int, int] = {}  # storage ptr -> bytes
        self.elements: dict[int, int] = {}  # storage ptr -> parameter elements (0 for buffers)
        for module in modules:
            for tensor, is_param in weight_tensors(module):
                key = _storage_key(tensor)
                if key is not None and tensor.numel() and key not in self.storages:
                    self.storages[key] = tensor.untyped_storage().nbytes()
                    self.elements[key] = tensor.untyped_storage().nbytes() // tensor.element_size() if is_param else 0
        self.bytes_read = 0
        self.touched: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if getattr(func, "is_view", False):
            return out
        flat, _ = tree_flatten((args, kwargs))
        out_bytes = sum(t.numel() * t.element_size() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        for arg in flat:
            key = _storage_key(arg) if isinstance(arg, torch.Tensor) else None
            if key in self.storages:
                read = min(arg.numel() * arg.element_size(), self.storages[key])
                if func in GATHER_OPS:
                    read = min(read, out_bytes)
                self.bytes_read += read
                self.touched.add(key)
        return out


@dataclass
class Cost:
    flops: float = 0.0
    bytes_read: float = 0.0
    calls: int = 0
    touched: set = field(default_factory=set)  # storage keys of the weights read

    def as_dict(self, elements: dict[int, int]) -> dict:
        return {"gflop": self.flops / 1e9, "mb_weights_read": self.bytes_read / 1e6,
                "params_m": sum(elements[k] for k in self.touched) / 1e6}


class StageCosts:
    """Per-stage FLOPs, weight bytes read and parameters used, by wrapping the stages' methods.

        costs = StageCosts([model_a, model_b])
        run()  # once first, so that lazily built weight copies exist
        with costs.stage(obj, "method", "name"), costs.stage(...):
            run()
        costs.report()  # {"name": {"gflop", "mb_weights_read", "params_m"}, ..., "total": ...}
    """

    def __init__(self, modules):
        self.modules = list(modules)
        self.costs: dict[str, Cost] = {}
        self.elements: dict[int, int] = {}
        self._active = False

    @contextmanager
    def stage(self, obj, method: str, name: str):
        """While inside, calls of obj.method count towards stage `name` (calls nested inside
        another counted stage count only there)."""
        original = getattr(obj, method)
        own = vars(obj).get(method)  # an instance attribute to put back, if any

        def counted(*args, **kwargs):
            if self._active:
                return original(*args, **kwargs)
            self._active = True
            reads = WeightReads(self.modules)
            self.elements.update(reads.elements)
            flops = FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas())
            try:
                with flops, reads:
                    result = original(*args, **kwargs)
            finally:
                self._active = False
            cost = self.costs.setdefault(name, Cost())
            cost.flops += flops.get_total_flops()
            cost.bytes_read += reads.bytes_read
            cost.calls += 1
            cost.touched |= reads.touched
            return result

        setattr(obj, method, counted)
        try:
            yield
        finally:
            if own is not None:
                setattr(obj, method, own)
            else:
                delattr(obj, method)

    def report(self) -> dict:
        out = {name: cost.as_dict(self.elements) for name, cost in self.costs.items()}
        total = Cost(flops=sum(c.flops for c in self.costs.values()),
                     bytes_read=sum(c.bytes_read for c in self.costs.values()),
                     touched=set().union(*(c.touched for c in self.costs.values())))
        out["total"] = total.as_dict(self.elements)
        return out

