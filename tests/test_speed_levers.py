"""The sampling speed levers (low-precision weights, decode threads) agree with float32 within
tolerance, leave float32 sampling untouched, and the benchmark's cost counters count right.
Nothing here times anything."""
import os
import sys

import pytest
import torch

from config import CompositeConfig, ConfigError
from models.diffusion import GaussianDiffusion, InbetweenDenoiser, InbetweenSampling
from models.gpt import MotionGPT, TokenSampling, pack_linear_weight

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
from costs import StageCosts  # noqa: E402

D = 263
TEXT_DIM = 32


@pytest.fixture(scope="module")
def cfg() -> CompositeConfig:
    # widths are multiples of 16 so that the int8 path runs torch's int8 kernel on CPU
    return CompositeConfig(gpt_n_layer=2, gpt_n_head=2, gpt_n_embd=64, vq_codebook_size=64,
                           diff_n_layer=2, diff_n_head=2, diff_n_embd=64, diff_patch_size=4,
                           diff_timesteps=100, num_inbetween_steps=5)


def make_gpt(cfg, seed: int = 0) -> MotionGPT:
    torch.manual_seed(seed)
    return MotionGPT(cfg, TEXT_DIM).eval()


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm())


def test_weight_dtype_fields_are_validated():
    assert CompositeConfig().gpt_weight_dtype == "float32" and CompositeConfig().diff_weight_dtype == "float32"
    assert CompositeConfig().gpt_decode_threads == 0
    with pytest.raises(ConfigError, match="gpt_weight_dtype"):
        CompositeConfig(gpt_weight_dtype="int4")
    with pytest.raises(ConfigError, match="diff_weight_dtype"):
        CompositeConfig(diff_weight_dtype="int8")
    with pytest.raises(ConfigError, match="gpt_decode_threads"):
        CompositeConfig(gpt_decode_threads=-1)


def test_packed_int8_weight_round_trips_within_half_a_step():
    weight = torch.randn(48, 64)
    q, scales = pack_linear_weight(weight, "int8")
    assert q.dtype == torch.int8 and scales.shape == (48,)
    restored = q.float() * scales.float()[:, None]
    assert torch.all((restored - weight).abs() <= 0.5 * scales.float()[:, None] + 1e-6)


@pytest.mark.parametrize("dtype, tolerance", [("bfloat16", 0.02), ("int8", 0.05)])
def test_gpt_low_precision_logits_match_float32(cfg, dtype, tolerance):
    gpt = make_gpt(cfg)
    text = torch.randn(3, TEXT_DIM)
    tokens = torch.randint(0, cfg.vq_codebook_size, (3, 9))
    num_tokens = torch.tensor([9, 9, 9])
    with torch.inference_mode():
        exact, _ = gpt(text, tokens, num_tokens)
        with gpt.low_precision(dtype):
            approx, _ = gpt(text, tokens, num_tokens)
        again, _ = gpt(text, tokens, num_tokens)
    assert relative_error(approx, exact) < tolerance
    assert torch.equal(again, exact)  # leaving the context restores the float32 layers
    assert not any("forward" in vars(m) for m in gpt.modules())


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_gpt_low_precision_greedy_tokens_are_float32_best_within_the_logit_error(cfg, dtype):
    gpt = make_gpt(cfg)
    text = torch.randn(4, TEXT_DIM)
    num_tokens = torch.tensor([12, 7, 12, 3])
    tokens = gpt.sample(text, num_tokens, TokenSampling(temperature=0.0), weight_dtype=dtype)  # (4, 12)
    inputs = torch.where(tokens == gpt.pad_id, torch.zeros_like(tokens), tokens)
    with torch.inference_mode():
        exact, _ = gpt(text, inputs, num_tokens)  # float32 logits along the low-precision choices
        with gpt.low_precision(dtype):
            approx, _ = gpt(text, inputs, num_tokens)
    logits = exact[:, :-1, :gpt.codebook_size]
    error = float((approx - exact).abs().max())
    chosen = logits.gather(2, inputs[..., None])[..., 0]
    gap = logits.max(dim=2).values - chosen  # how far below float32's best each choice is
    valid = tokens != gpt.pad_id
    assert bool(valid.sum() == num_tokens.sum())
    assert float(gap[valid].max()) <= 2 * error + 1e-6  # a swap only between near-ties


def test_gpt_float32_sampling_is_unchanged_and_threads_are_restored(cfg):
    gpt = make_gpt(cfg)
    text, num_tokens = torch.randn(2, TEXT_DIM), torch.tensor([10, 6])
    kwargs = dict(policy=TokenSampling(guidance_scale=2.0),
                  generator=[torch.Generator().manual_seed(r) for r in range(2)])
    reference = gpt.sample(text, num_tokens, **kwargs)
    threads = torch.get_num_threads()
    gpt.decode_threads = 1
    try:
        kwargs["generator"] = [torch.Generator().manual_seed(r) for r in range(2)]
        assert torch.equal(gpt.sample(text, num_tokens, weight_dtype="float32", **kwargs), reference)
    finally:
        gpt.decode_threads = 0
    assert torch.get_num_threads() == threads


def test_packed_copies_follow_weight_changes(cfg):
    gpt, other = make_gpt(cfg, seed=0), make_gpt(cfg, seed=1)
    text, num_tokens = torch.randn(2, TEXT_DIM), torch.tensor([8, 8])
    with torch.inference_mode(), gpt.low_precision("int8"):
        first, _ = gpt(text, torch.zeros(2, 8, dtype=torch.long), num_tokens)
    gpt.load_state_dict(other.state_dict())  # in-place copy: the int8 copies must be rebuilt
    with torch.inference_mode(), gpt.low_precision("int8"):
        reloaded, _ = gpt(text, torch.zeros(2, 8, dtype=torch.long), num_tokens)
    with torch.inference_mode(), other.low_precision("int8"):
        expected, _ = other(text, torch.zeros(2, 8, dtype=torch.long), num_tokens)
    assert torch.equal(reloaded, expected) and not torch.equal(first, expected)


def make_diffusion(cfg, dtype: str) -> GaussianDiffusion:
    torch.manual_seed(0)
    denoiser = InbetweenDenoiser(cfg, TEXT_DIM)
    torch.nn.init.normal_(denoiser.out_proj.weight, std=0.02)  # zero at init: give the output weights
    return GaussianDiffusion(cfg.replace(diff_weight_dtype=dtype), denoiser)


def diffusion_inputs(B: int = 2, T: int = 40):
    gen = torch.Generator().manual_seed(5)
    values = torch.randn(B, T, D, generator=gen)
    mask = torch.zeros(B, T)
    mask[:, ::5] = 1.0
    return torch.randn(B, TEXT_DIM, generator=gen), values, mask


def residual(diffusion: GaussianDiffusion, sample: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
    """What the network adds to the keyframe interpolation it refines (B, T, D): the part of a
    sample that the weights' precision can change (the interpolation is exact in both)."""
    return sample - diffusion.model.interpolate(values, mask[..., None].expand_as(values))


def test_diffusion_bf16_sampling_matches_float32(cfg):
    text, values, mask = diffusion_inputs()
    samples = {}
    for dtype in ("float32", "bfloat16"):
        diffusion = make_diffusion(cfg, dtype)
        sample = diffusion.sample(text, values, mask, sampling=InbetweenSampling(5, 2.0),
                                  generator=torch.Generator().manual_seed(1))
        samples[dtype] = sample
        samples[dtype + " residual"] = residual(diffusion, sample, values, mask)
    assert samples["float32 residual"].norm() > 0.02 * samples["float32"].norm()  # the network's share is not nil
    assert relative_error(samples["bfloat16 residual"], samples["float32 residual"]) < 0.02
    pinned = mask.bool()[..., None].expand_as(values)
    assert torch.equal(samples["bfloat16"][pinned], values[pinned])  # keyframes still exact


def test_diffusion_bf16_uses_the_weight_average_when_sampling_does(cfg):
    text, values, mask = diffusion_inputs()
    samples = {}
    for dtype in ("float32", "bfloat16"):
        diffusion = make_diffusion(cfg, dtype)
        with torch.no_grad():
            weights = dict(diffusion.model.named_parameters())
            for name, average in diffusion.model.ema.weights().items():
                average.copy_(0.5 * weights[name])  # an average unlike the weights (its output layer not zero)
            diffusion.model.ema.steps.fill_(1)
        sample = diffusion.sample(text, values, mask, sampling=InbetweenSampling(5, 2.0),
                                  generator=torch.Generator().manual_seed(1))
        samples[dtype] = residual(diffusion, sample, values, mask)
        if dtype == "float32":
            diffusion.model.ema.steps.fill_(0)  # the same sampler on the weights themselves
            own = diffusion.sample(text, values, mask, sampling=InbetweenSampling(5, 2.0),
                                   generator=torch.Generator().manual_seed(1))
            samples["weights"] = residual(diffusion, own, values, mask)
    assert samples["float32"].norm() > 0 and relative_error(samples["weights"], samples["float32"]) > 0.1
    assert relative_error(samples["bfloat16"], samples["float32"]) < 0.02


def test_costs_count_flops_weight_bytes_and_parameters(cfg):
    gpt = make_gpt(cfg)
    text, num_tokens = torch.randn(1, TEXT_DIM), torch.tensor([10])
    linears = [m for m in gpt.modules() if isinstance(m, torch.nn.Linear)]
    params = sum(p.numel() for p in gpt.parameters())
    linear_weights = sum(m.weight.numel() for m in linears)
    report = {}
    for dtype in ("float32", "int8"):
        gpt.sample(text, num_tokens, weight_dtype=dtype)  # builds the int8 copies first
        costs = StageCosts([gpt])
        with costs.stage(gpt, "sample", "gpt"):
            gpt.sample(text, num_tokens, weight_dtype=dtype)
        report[dtype] = costs.report()["gpt"]
    assert "sample" not in vars(gpt)  # the wrapper is gone
    # one prefix pass over the cond token, then one step per further token: every linear weight
    # is read 10 times; int8 weights are a quarter of the bytes, and the same parameters
    assert report["float32"]["mb_weights_read"] * 1e6 >= 10 * 4 * linear_weights
    assert report["int8"]["mb_weights_read"] < 0.4 * report["float32"]["mb_weights_read"]
    assert report["float32"]["params_m"] * 1e6 <= params
    assert abs(report["int8"]["params_m"] - report["float32"]["params_m"]) < 1e-6 * params
    # FLOPs: 2 per weight and row in the linear layers, 10 rows in all (1 + 9 steps), plus attention
    assert report["float32"]["gflop"] * 1e9 >= 2 * 10 * (linear_weights - gpt.text_proj.weight.numel())
    assert report["int8"]["gflop"] == pytest.approx(report["float32"]["gflop"], rel=1e-6)
