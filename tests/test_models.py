"""Tests of the three models on tiny configs: shapes, round trips, sampler contracts."""
import contextlib
import pytest
import torch

from config import CompositeConfig
from config import ConfigError
from models.diffusion import (GaussianDiffusion, InbetweenDenoiser, InbetweenSampling, difference_mse,
                              sample_training_keyframe_mask, smoothing_kernel)
from models.keyframes import interpolate_keyframes, keyframe_envelope
from models.gpt import MotionGPT, TokenSampling, num_keyframes
from models.vqvae import KeyframeVQVAE

D = 263
TEXT_DIM = 24


@pytest.fixture(scope="module")
def cfg() -> CompositeConfig:
    return CompositeConfig(vq_codebook_size=32, vq_code_dim=16, vq_width=32, vq_depth=2,
                           gpt_n_layer=2, gpt_n_head=2, gpt_n_embd=32, diff_n_layer=2, diff_n_head=2,
                           diff_n_embd=32, diff_patch_size=2, diff_timesteps=100, num_inbetween_steps=5,
                           diff_joint_vel_loss_weight=0.0, diff_foot_loss_weight=0.0)  # (those need data statistics)


def real_keyframes(length: int, interval: int) -> list[int]:
    idx = list(range(0, length, interval))
    return idx if idx[-1] == length - 1 else idx + [length - 1]


def test_num_keyframes_matches_layout():
    for length in [1, 2, 5, 6, 7, 40, 119, 120, 121, 196, 512]:
        assert num_keyframes(length, 5) == len(real_keyframes(length, 5))


# ---- VQ-VAE -------------------------------------------------------------------------------
def test_vqvae_forward_backward_shapes(cfg):
    torch.manual_seed(0)
    vq = KeyframeVQVAE(cfg)
    x = torch.randn(3, 12, D)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 9:] = False
    out = vq(x, mask)
    assert out["recon"].shape == (3, 12, D)
    assert out["codes"].shape == (3, 12) and out["codes"].dtype == torch.long
    assert 0 <= int(out["codes"].min()) and int(out["codes"].max()) < cfg.vq_codebook_size
    for key in ["loss", "loss_recon", "loss_commit", "perplexity"]:
        assert out[key].dim() == 0 and torch.isfinite(out[key])
    out["loss"].backward()
    assert vq.encoder.conv_in.weight.grad is not None and vq.decoder.conv_out.weight.grad.abs().sum() > 0


def test_vqvae_round_trip_equals_forward_in_eval(cfg):
    torch.manual_seed(0)
    vq = KeyframeVQVAE(cfg)
    vq.train()
    x = torch.randn(4, 10, D)
    vq(x)  # initialises the codebook from latents
    vq.eval()
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[2, 6:] = False
    out = vq(x, mask)
    codes = vq.encode(x, mask)
    assert torch.equal(codes, out["codes"])
    recon = vq.decode(codes, mask)
    assert torch.allclose(recon[mask], out["recon"][mask], atol=1e-5)


def test_vqvae_padding_does_not_leak(cfg):
    torch.manual_seed(0)
    vq = KeyframeVQVAE(cfg).eval()
    x = torch.randn(2, 9, D)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    x_garbage = x.clone()
    x_garbage[0, 6:] = 100.0
    alone = vq(x[:1, :6])["recon"]
    padded = vq(x_garbage, mask)["recon"]
    assert torch.allclose(padded[0, :6], alone[0], atol=1e-5)


def test_vqvae_dead_code_reset(cfg):
    torch.manual_seed(0)
    vq = KeyframeVQVAE(cfg).train()
    x = torch.randn(4, 16, D)
    vq(x)
    q = vq.quantizer
    with torch.no_grad():
        q.codebook[:4] = 1e3  # far from every latent: never chosen
        q.ema_sum[:4] = 1e3 * q.ema_count[:4, None]
        q.ema_count[:4] = 0.5
    vq(x)
    with torch.no_grad():
        latents = vq.encoder(x.transpose(1, 2), torch.ones(4, 1, 16)).transpose(1, 2).reshape(-1, cfg.vq_code_dim)
    gap = torch.cdist(q.codebook[:4], latents).min(dim=1).values
    assert gap.max() < 1e-3  # re-initialised onto latents of the batch
    assert torch.all(q.ema_count[:4] == 1.0)


def test_vqvae_codebook_usage(cfg):
    torch.manual_seed(0)
    vq = KeyframeVQVAE(cfg).eval()
    vq.reset_usage()
    assert vq.codebook_usage() == dict(perplexity=0.0, used_fraction=0.0)
    codes = vq.encode(torch.randn(2, 20, D))
    usage = vq.codebook_usage()
    assert usage["used_fraction"] == len(codes.unique()) / cfg.vq_codebook_size
    assert 1.0 <= usage["perplexity"] <= cfg.vq_codebook_size
    with pytest.raises(ValueError):
        vq.decode(torch.full((1, 3), cfg.vq_codebook_size))


# ---- GPT ----------------------------------------------------------------------------------
def make_gpt(cfg) -> MotionGPT:
    torch.manual_seed(0)
    return MotionGPT(cfg, TEXT_DIM).eval()


def test_gpt_forward_backward_shapes(cfg):
    gpt = make_gpt(cfg).train()
    N = cfg.vq_codebook_size
    num_tokens = torch.tensor([6, 3])
    tokens = torch.randint(0, N, (2, 6))
    tokens[1, 3:] = gpt.pad_id
    targets = torch.full((2, 7), -100)
    targets[0, :6], targets[0, 6] = tokens[0], gpt.end_id
    targets[1, :3], targets[1, 3] = tokens[1, :3], gpt.end_id
    logits, loss = gpt(torch.randn(2, TEXT_DIM), tokens, num_tokens, targets)
    assert logits.shape == (2, 7, N + 2)
    assert torch.isfinite(loss)
    loss.backward()
    assert gpt.tok_emb.weight.grad is not None and gpt.len_emb.weight.grad.abs().sum() > 0
    assert gpt(torch.randn(2, TEXT_DIM), tokens, num_tokens)[1] is None


def test_gpt_causal_rows_independent_of_padding(cfg):
    gpt = make_gpt(cfg)
    text = torch.randn(2, TEXT_DIM)
    tokens = torch.randint(0, cfg.vq_codebook_size, (2, 8))
    num_tokens = torch.tensor([8, 5])
    full, _ = gpt(text, tokens, num_tokens)
    alone, _ = gpt(text[1:], tokens[1:, :5], num_tokens[1:])
    assert torch.allclose(full[1, :6], alone[0], atol=1e-5)


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_gpt_kv_cache_matches_uncached(cfg, guidance_scale):
    gpt = make_gpt(cfg)
    text = torch.randn(3, TEXT_DIM)
    num_tokens = torch.tensor([9, 4, 7])
    kwargs = dict(policy=TokenSampling(temperature=1.0, top_k=20, top_p=0.95, guidance_scale=guidance_scale))
    cached = gpt.sample(text, num_tokens, generator=torch.Generator().manual_seed(3), **kwargs)
    uncached = gpt.sample(text, num_tokens, generator=torch.Generator().manual_seed(3),
                          use_kv_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    again = gpt.sample(text, num_tokens, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(cached, again)


def test_gpt_exact_length_and_no_special_tokens(cfg):
    gpt = make_gpt(cfg)
    N = cfg.vq_codebook_size
    bias = torch.zeros(N + 2)
    bias[N:] = 100.0  # make END and PAD by far the most likely tokens
    gpt.head.bias = torch.nn.Parameter(bias)
    num_tokens = torch.tensor([1, 12, 5, 8])
    tokens = gpt.sample(torch.randn(4, TEXT_DIM), num_tokens, TokenSampling(guidance_scale=2.0),
                        generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 12)
    for row, n in zip(tokens, num_tokens.tolist()):
        assert torch.all((row[:n] >= 0) & (row[:n] < N))
        assert torch.all(row[n:] == gpt.pad_id)
    greedy = gpt.sample(torch.randn(4, TEXT_DIM), num_tokens, policy=TokenSampling(temperature=0.0))
    assert int(greedy[0, 0]) < N


def test_gpt_pinned_tokens(cfg):
    gpt = make_gpt(cfg)
    text = torch.randn(2, TEXT_DIM)
    num_tokens = torch.tensor([10, 7])
    pinned = torch.full((2, 10), -1)
    pinned[:, :3] = torch.tensor([[1, 2, 3], [4, 5, 6]])  # a common pinned prefix (one pass)
    pinned[0, 6], pinned[1, 4], pinned[0, 9] = 11, 12, 13
    kwargs = dict(policy=TokenSampling(guidance_scale=1.5), pinned_tokens=pinned)
    out = gpt.sample(text, num_tokens, generator=torch.Generator().manual_seed(1), **kwargs)
    keep = (pinned >= 0) & (torch.arange(10)[None] < num_tokens[:, None])
    assert torch.equal(out[keep], pinned[keep])
    uncached = gpt.sample(text, num_tokens, generator=torch.Generator().manual_seed(1),
                          use_kv_cache=False, **kwargs)
    assert torch.equal(out, uncached)
    everything = torch.randint(0, cfg.vq_codebook_size, (2, 10))
    assert torch.equal(gpt.sample(text, torch.tensor([10, 10]), pinned_tokens=everything), everything)


def test_gpt_batch_with_row_generators_equals_rows_alone(cfg):
    gpt = make_gpt(cfg)
    text = torch.randn(3, TEXT_DIM)
    num_tokens = torch.tensor([9, 4, 7])
    generators = [torch.Generator().manual_seed(10 + row) for row in range(3)]
    batch = gpt.sample(text, num_tokens, policy=TokenSampling(guidance_scale=2.0), generator=generators)
    for row in range(3):
        alone = gpt.sample(text[row:row + 1], num_tokens[row:row + 1], TokenSampling(guidance_scale=2.0),
                           generator=torch.Generator().manual_seed(10 + row))
        assert torch.equal(batch[row, :int(num_tokens[row])], alone[0])


def test_gpt_bad_input(cfg):
    gpt = make_gpt(cfg)
    with pytest.raises(ValueError):
        gpt.sample(torch.randn(1, TEXT_DIM), torch.tensor([0]))
    with pytest.raises(ValueError):
        gpt.sample(torch.randn(1, TEXT_DIM + 1), torch.tensor([3]))
    with pytest.raises(ValueError):
        gpt.sample(torch.randn(1, TEXT_DIM), torch.tensor([3]), pinned_tokens=torch.full((1, 3), 99))


# ---- diffusion ------------------------------------------------------------------------------
def make_diffusion(cfg) -> GaussianDiffusion:
    torch.manual_seed(0)
    return GaussianDiffusion(cfg, InbetweenDenoiser(cfg, TEXT_DIM))


def test_interpolate_keyframes():
    values = torch.zeros(1, 7, 3)
    values[0, 1, 0], values[0, 5, 0] = 2.0, 6.0  # feature 0 pinned at frames 1 and 5
    values[0, 3, 1] = 4.0  # feature 1 pinned at frame 3 only
    mask = torch.zeros(1, 7, 3)
    mask[0, 1, 0] = mask[0, 5, 0] = mask[0, 3, 1] = 1.0
    values_noisy = values + 100.0 * (1 - mask)  # values at unpinned entries must not matter
    out = interpolate_keyframes(values_noisy, mask)
    assert torch.allclose(out[0, :, 0], torch.tensor([2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0]))
    assert torch.allclose(out[0, :, 1], torch.full((7,), 4.0))
    assert torch.all(out[0, :, 2] == 0)


def test_cubic_keyframe_interpolation():
    frames = torch.arange(21.0)
    values = (frames ** 2)[None, :, None].repeat(1, 1, 2)  # a parabola, pinned every 5 frames
    mask = torch.zeros(1, 21, 2)
    mask[0, ::5, 0] = 1.0
    mask[0, [3, 9], 1] = 1.0  # feature 1: two pins only
    out = interpolate_keyframes(values, mask, "cubic")
    pinned = mask.bool()
    assert torch.equal(out[pinned], values[pinned])
    assert torch.allclose(out[0, 5:16, 0], frames[5:16] ** 2)  # central slopes reproduce a parabola exactly
    step = out[0, 1:, 0] - out[0, :-1, 0]
    assert (step[1:] - step[:-1]).abs().max() < 3.0  # no kink (the parabola's own second difference is 2)
    linear = interpolate_keyframes(values, mask)
    assert (linear[0, 2:, 0] - 2 * linear[0, 1:-1, 0] + linear[0, :-2, 0]).abs().max() > 9.9  # kinks
    assert torch.allclose(out[0, 3:10, 1], linear[0, 3:10, 1])  # one segment: the chord both ways
    assert torch.equal(out[0, :3, 1], torch.full((3,), 9.0)) and torch.equal(out[0, 10:, 1], torch.full((11,), 81.0))
    with pytest.raises(ValueError, match="cubic"):
        interpolate_keyframes(values, mask, "quadratic")


def test_a_frame_grid_mask_gives_what_per_feature_masks_give():
    """A mask that pins every feature of a frame alike (the keyframe grid) takes a per-frame
    shortcut; adding one feature pinned elsewhere forces the per-feature path, and the shared
    features must come out identical."""
    torch.manual_seed(0)
    values = torch.randn(3, 23, 6)
    grid = torch.zeros(3, 23, 6)
    grid[:, ::5] = 1.0
    grid[1, 22] = 1.0  # a last frame off the grid
    grid[2, :7] = 0.0  # nothing pinned before frame 10
    odd = torch.zeros(3, 23, 1)
    odd[:, 4] = 1.0
    mixed_values, mixed_mask = torch.cat([values, torch.randn(3, 23, 1)], -1), torch.cat([grid, odd], -1)
    for kind in ("linear", "cubic"):
        fast = interpolate_keyframes(values, grid, kind)
        assert fast.shape == values.shape
        assert torch.equal(fast, interpolate_keyframes(mixed_values, mixed_mask, kind)[..., :6])
    envelope = keyframe_envelope(grid, ramp=4)
    assert envelope.shape == grid.shape
    assert torch.equal(envelope, keyframe_envelope(mixed_mask, ramp=4)[..., :6])


def test_denoiser_forward_backward_shapes(cfg):
    diffusion = make_diffusion(cfg)
    x0 = torch.randn(2, 15, D)  # odd T: padded up to the patch size inside
    padding = torch.ones(2, 15, dtype=torch.bool)
    padding[1, 11:] = False
    pred = diffusion.model(x0, torch.tensor([3, 50]), torch.randn(2, TEXT_DIM), x0, torch.zeros_like(x0),
                           padding, torch.tensor([False, True]))
    assert pred.shape == (2, 15, D)
    out = diffusion.training_loss(x0, torch.randn(2, TEXT_DIM), torch.ones(2, 15), padding)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert diffusion.model.in_proj.weight.grad is not None


def test_denoiser_ignores_padding_frames(cfg):
    diffusion = make_diffusion(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(diffusion.model.out_proj.weight, std=0.1)
    model = diffusion.model.eval()
    x = torch.randn(2, 16, D)
    padding = torch.ones(2, 16, dtype=torch.bool)
    padding[0, 10:] = False
    x_garbage = x.clone()
    x_garbage[0, 10:] = 50.0
    args = (torch.tensor([10, 10]), torch.randn(2, TEXT_DIM))
    zeros = torch.zeros_like(x)
    a = model(x, *args, zeros, zeros, padding)
    b = model(x_garbage, *args, zeros, zeros, padding)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-5)
    assert not torch.allclose(a[0, :10], model(x_garbage, *args, zeros, zeros, None)[0, :10], atol=1e-3)


@pytest.mark.parametrize("method,guidance_scale", [("ddim", 1.0), ("ddim", 2.0), ("ddpm", 2.0)])
def test_sampling_imputes_keyframes_exactly(cfg, method, guidance_scale):
    diffusion = make_diffusion(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(diffusion.model.out_proj.weight, std=0.1)
    B, T = 2, 21
    values = torch.randn(B, T, D)
    mask = torch.zeros(B, T, D)
    mask[:, ::5] = 1.0
    mask[:, T - 1] = 1.0
    mask[1, 7, 3:67] = 1.0  # a partial (position dims only) keyframe
    padding = torch.ones(B, T, dtype=torch.bool)
    padding[1, 18:] = False
    mask[1, 18:] = 0.0
    out = diffusion.sample(torch.randn(B, TEXT_DIM), values, mask, padding,
                           sampling=InbetweenSampling(4, guidance_scale, method),
                           generator=torch.Generator().manual_seed(0))
    pinned = mask.bool()
    assert out.shape == (B, T, D) and torch.isfinite(out).all()
    assert torch.equal(out[pinned], values[pinned])
    assert not torch.allclose(out[1, 7, 67:], values[1, 7, 67:])  # unpinned dims were sampled
    assert torch.all(out[1, 18:] == 0)
    again = diffusion.sample(torch.randn(B, TEXT_DIM), values, mask, padding,
                             sampling=InbetweenSampling(4, guidance_scale, method),
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[pinned], again[pinned])


def test_sampling_batch_with_row_generators_equals_rows_alone(cfg):
    diffusion = make_diffusion(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(diffusion.model.out_proj.weight, std=0.1)
    lengths = [15, 9]  # odd: the last patch of each row is half padding
    T = max(lengths)
    values = torch.randn(2, T, D)
    mask = torch.zeros(2, T, D)
    padding = torch.zeros(2, T, dtype=torch.bool)
    for row, n in enumerate(lengths):
        mask[row, [0, 5, n - 1]] = 1.0
        padding[row, :n] = True
    text = torch.randn(2, TEXT_DIM)
    kwargs = dict(sampling=InbetweenSampling(num_steps=3, guidance_scale=2.0, method="ddpm"))
    batch = diffusion.sample(text, values, mask, padding, generator=[torch.Generator().manual_seed(row)
                                                                      for row in range(2)], **kwargs)
    for row, n in enumerate(lengths):
        alone = diffusion.sample(text[row:row + 1], values[row:row + 1, :n], mask[row:row + 1, :n], None,
                                 generator=[torch.Generator().manual_seed(row)], **kwargs)
        assert torch.allclose(batch[row, :n], alone[0], atol=1e-4)


def test_sample_timesteps_and_eta(cfg):
    diffusion = make_diffusion(cfg)
    assert diffusion.sample_timesteps(4) == [99, 74, 49, 24]
    assert diffusion.sample_timesteps(1) == [99]
    assert len(set(diffusion.sample_timesteps(100))) == 100
    with pytest.raises(ValueError):
        diffusion.sample_timesteps(0)
    values, mask = torch.zeros(1, 8, D), torch.zeros(1, 8, D)
    out = diffusion.sample(torch.randn(1, TEXT_DIM), values, mask, None,
                           sampling=InbetweenSampling(num_steps=3, guidance_scale=2.0, eta=1.0))
    assert out.shape == (1, 8, D) and torch.isfinite(out).all()


def test_diffusion_overfits_tiny_batch(cfg):
    diffusion = make_diffusion(cfg)
    torch.manual_seed(0)
    frame = torch.arange(12.0)[None, :, None]
    x0 = torch.randn(4, 1, D) * torch.sin(2 * torch.pi * frame / 4 + torch.randn(4, 1, D))  # (4, 12, D)
    text = torch.randn(4, TEXT_DIM)
    padding = torch.ones(4, 12, dtype=torch.bool)
    keyframes = torch.zeros(4, 12)
    keyframes[:, ::5] = 1.0
    opt = torch.optim.Adam(diffusion.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = diffusion.training_loss(x0, text, keyframes, padding)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_difference_mse_known_answers():
    target = torch.randn(2, 9, 3)
    valid = torch.ones(2, 9, 1)
    assert difference_mse(target + 5.0, target, valid, order=1) < 1e-10  # a constant offset has no velocity error
    assert difference_mse(target + torch.arange(9.0)[None, :, None], target, valid, order=2) < 1e-10  # nor a drift
    jitter = target + torch.tensor([1.0, -1.0]).repeat(5)[:9][None, :, None]  # +-1 frame to frame
    assert torch.isclose(difference_mse(jitter, target, valid, order=1), torch.tensor(4.0))
    assert torch.isclose(difference_mse(jitter, target, valid, order=2), torch.tensor(16.0))
    valid[1, 5:] = 0.0  # padding frames take no part
    garbage = jitter.clone()
    garbage[1, 5:] = 1e3
    assert torch.isclose(difference_mse(garbage, target, valid, order=2), torch.tensor(16.0))


def test_training_loss_adds_velocity_and_acceleration_terms(cfg):
    x0 = torch.randn(2, 14, D)
    padding = torch.ones(2, 14, dtype=torch.bool)
    padding[1, 9:] = False
    text, keyframes = torch.randn(2, TEXT_DIM), torch.zeros(2, 14)
    keyframes[:, ::5] = 1.0
    losses = []
    for weights in [(0.0, 0.0), (0.5, 2.0)]:
        diffusion = make_diffusion(cfg.replace(diff_vel_loss_weight=weights[0], diff_acc_loss_weight=weights[1],
                                               diff_dropout=0.0))
        gens = [torch.Generator().manual_seed(row) for row in range(2)]
        losses.append(diffusion.training_loss(x0, text, keyframes, padding, generator=gens))
    plain, weighted = losses
    assert torch.isclose(plain["loss"], plain["mse"])
    assert torch.isclose(weighted["mse"], plain["mse"]) and weighted["vel"] > 0 and weighted["acc"] > 0
    assert torch.isclose(weighted["loss"], weighted["mse"] + 0.5 * weighted["vel"] + 2.0 * weighted["acc"])


def test_weight_average_is_updated_by_training_and_used_for_sampling(cfg):
    cfg_ema = cfg.replace(diff_ema_decay=0.5)
    diffusion = make_diffusion(cfg_ema)
    model = diffusion.model
    x0, padding = torch.randn(2, 10, D), torch.ones(2, 10, dtype=torch.bool)
    text, keyframes = torch.randn(2, TEXT_DIM), torch.zeros(2, 10)
    keyframes[:, ::5] = 1.0
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = diffusion.training_loss(x0, text, keyframes, padding)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert int(model.ema.steps) == 3
    with torch.no_grad():  # validation passes leave the average alone
        model.eval()
        diffusion.training_loss(x0, text, keyframes, padding)
        model.train()
    assert int(model.ema.steps) == 3
    average = model.ema.weights()["out_proj.weight"]
    assert not torch.equal(average, model.out_proj.weight) and average.abs().sum() > 0
    # the sampler runs the averaged weights: the same as a copy whose weights are the average
    twin = InbetweenDenoiser(cfg, TEXT_DIM)
    twin.load_state_dict({**model.state_dict(), **model.ema.weights()})
    twin.ema.steps.zero_()
    sample = lambda d: d.sample(text, x0, keyframes, None, sampling=InbetweenSampling(3, 2.0),
                                generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sample(diffusion), sample(GaussianDiffusion(cfg, twin)), atol=1e-5)
    # a checkpoint from before the average loads, with an average never updated (raw weights sample)
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("ema.")}
    fresh = InbetweenDenoiser(cfg, TEXT_DIM)
    fresh.load_state_dict(old)
    assert int(fresh.ema.steps) == 0 and torch.equal(fresh.ema.weights()["out_proj.weight"], model.out_proj.weight)


def test_patch_conv_starts_as_identity_and_ignores_padding(cfg):
    torch.manual_seed(0)
    plain = InbetweenDenoiser(cfg.replace(diff_patch_conv=0), TEXT_DIM).eval()
    torch.manual_seed(0)
    conv = InbetweenDenoiser(cfg.replace(diff_patch_conv=5, diff_patch_conv_sigma=0.0), TEXT_DIM).eval()
    for model in (plain, conv):
        torch.nn.init.normal_(model.out_proj.weight, std=0.1, generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 13, D)
    padding = torch.ones(2, 13, dtype=torch.bool)
    padding[0, 8:] = False
    args = (torch.tensor([10, 60]), torch.randn(2, TEXT_DIM), torch.zeros_like(x), torch.zeros_like(x), padding)
    with torch.no_grad():
        assert torch.allclose(conv(x, *args)[padding], plain(x, *args)[padding], atol=1e-6)
        torch.nn.init.normal_(conv.patch_conv.weight, std=0.3)
        garbage = x.clone()
        garbage[0, 8:] = 50.0
        assert torch.allclose(conv(x, *args)[0, :8], conv(garbage, *args)[0, :8], atol=1e-5)
    with pytest.raises(ConfigError, match="diff_patch_conv"):
        cfg.replace(diff_patch_conv=4)


def test_patch_conv_gaussian_start_and_fixed_filter(cfg):
    assert torch.equal(smoothing_kernel(5, 0.0), torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    kernel = smoothing_kernel(5, 1.0)
    assert torch.isclose(kernel.sum(), torch.tensor(1.0)) and torch.equal(kernel, kernel.flip(0))
    assert kernel[2] > kernel[1] > kernel[0] > 0
    model = InbetweenDenoiser(cfg.replace(diff_patch_conv=5, diff_patch_conv_sigma=1.0,
                                          diff_patch_conv_learned=False), TEXT_DIM)
    assert torch.equal(model.patch_conv.weight[7, 0], kernel) and not model.patch_conv.weight.requires_grad
    with torch.no_grad():  # a residual alternating frame to frame is all but removed
        jitter = torch.tensor([1.0, -1.0]).repeat(8)[None, :, None].expand(1, 16, D)
        out = model.patch_conv(jitter.transpose(1, 2)).transpose(1, 2)
    assert out[0, 2:-2].abs().max() < 0.05


def test_exact_keyframes_prediction_passes_through_the_pins(cfg):
    model = InbetweenDenoiser(cfg.replace(diff_exact_keyframes=True, diff_residual_envelope=False, diff_patch_conv=5,
                                          diff_patch_conv_sigma=1.0), TEXT_DIM).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.out_proj.weight, std=0.1)
        values, mask = torch.randn(2, 17, D), torch.zeros(2, 17, D)
        mask[:, ::5] = 1.0
        mask[1, 7, 3:67] = 1.0  # a partial keyframe pins its dims only
        pred = model(torch.randn(2, 17, D), torch.tensor([5, 50]), torch.randn(2, TEXT_DIM), values, mask)
    pinned = mask.bool()
    assert torch.allclose(pred[pinned], values[pinned], atol=1e-6)
    assert (pred[~pinned] - interpolate_keyframes(values, mask)[~pinned]).abs().max() > 1e-3  # the rest is free


def test_keyframe_envelope_and_residual_envelope(cfg):
    mask = torch.zeros(1, 10, 2)
    mask[0, [2, 6], 0] = 1.0  # feature 1 has no pin
    envelope = keyframe_envelope(mask, ramp=2)
    assert torch.allclose(envelope[0, :, 0], torch.tensor([1.0, 0.5, 0.0, 0.5, 1.0, 0.5, 0.0, 0.5, 1.0, 1.0]),
                          atol=1e-6)
    assert torch.equal(envelope[0, :, 1], torch.ones(10))
    model = InbetweenDenoiser(cfg.replace(diff_residual_envelope=True, diff_keyframe_interp="cubic",
                                          diff_patch_conv=5, diff_patch_conv_sigma=1.0), TEXT_DIM).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.out_proj.weight, std=0.1)
        values, mask = torch.randn(1, 21, D), torch.zeros(1, 21, D)
        mask[:, ::5] = 1.0
        pred = model(torch.randn(1, 21, D), torch.tensor([50]), torch.randn(1, TEXT_DIM), values, mask)
    assert torch.allclose(pred[mask.bool()], values[mask.bool()], atol=1e-6)
    residual = pred - interpolate_keyframes(values, mask, "cubic")
    assert residual[0, [1, 4, 6, 9]].abs().max() < 0.5 * residual[0, [2, 3, 7, 8]].abs().max()  # small by the pins


def test_checkpoint_from_before_the_options_keeps_its_form(cfg):
    legacy_cfg = cfg.replace(diff_patch_conv=0, diff_keyframe_interp="linear", diff_exact_keyframes=False,
                             diff_residual_envelope=False)
    torch.manual_seed(0)
    legacy = InbetweenDenoiser(legacy_cfg, TEXT_DIM).eval()
    with torch.no_grad():
        torch.nn.init.normal_(legacy.out_proj.weight, std=0.1)
    old_state = {k: v for k, v in legacy.state_dict().items() if not k.startswith("ema.") and k != "residual_form"}
    current = InbetweenDenoiser(cfg, TEXT_DIM).eval()  # today's defaults: cubic, envelope, patch conv
    assert current.interp_kind == "cubic" and current.residual_envelope
    current.load_state_dict(old_state)
    assert current.interp_kind == "linear" and not current.residual_envelope and not current.exact_keyframes
    assert int(current.ema.steps) == 0
    x, values, mask = torch.randn(1, 12, D), torch.randn(1, 12, D), torch.zeros(1, 12, D)
    mask[:, ::5] = 1.0
    args = (torch.tensor([30]), torch.randn(1, TEXT_DIM), values, mask)
    with torch.no_grad():
        assert torch.allclose(current(x, *args), legacy(x, *args), atol=1e-5)
    again = InbetweenDenoiser(legacy_cfg, TEXT_DIM)  # and a checkpoint with its form keeps it
    again.load_state_dict(InbetweenDenoiser(cfg, TEXT_DIM).state_dict(), strict=False)
    assert again.interp_kind == "cubic" and again.residual_envelope


def test_joint_space_loss_terms(cfg):
    from utils import FOOT_SLICE
    diffusion = make_diffusion(cfg.replace(diff_joint_vel_loss_weight=1.0, diff_foot_loss_weight=1.0))
    x0, padding = torch.zeros(1, 12, D), torch.ones(1, 12, dtype=torch.bool)
    with pytest.raises(ValueError, match="need the training data's feature statistics"):
        diffusion.training_loss(x0, torch.randn(1, TEXT_DIM), torch.zeros(1, 12), padding)
    mean, std = torch.zeros(D), torch.ones(D)
    mean[3] = 0.9  # root height
    mean[4:67] = torch.linspace(-0.5, 0.5, 63)  # some fixed pose
    diffusion.set_feature_statistics(mean, std)
    valid = padding[..., None].float()
    stand, walk = x0.clone(), x0.clone()
    stand[:, :, FOOT_SLICE] = 1.0  # standing still, every foot reported planted
    walk[..., 2] = 0.05  # the root steps 5 cm forward a frame, no foot planted
    assert diffusion.joint_losses(walk, walk, valid) == (0.0, 0.0)
    joint_vel, foot = diffusion.joint_losses(walk, stand, valid)  # slides 5 cm a frame on planted feet
    assert torch.isclose(joint_vel, torch.tensor(25.0 / 3)) and torch.isclose(foot, torch.tensor(25.0))
    joint_vel, foot = diffusion.joint_losses(stand, walk, valid)  # the clean motion's feet were not planted
    assert torch.isclose(joint_vel, torch.tensor(25.0 / 3)) and foot == 0.0
    out = diffusion.training_loss(stand, torch.randn(1, TEXT_DIM), torch.zeros(1, 12), padding)
    assert torch.isclose(out["loss"], out["mse"] + out["joint_vel"] + out["foot"])


def test_training_keyframe_mask():
    B, T, interval = 400, 40, 5
    lengths = torch.randint(12, T + 1, (B,), generator=torch.Generator().manual_seed(1))
    mask = sample_training_keyframe_mask(lengths, T, interval, D, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (B, T, D)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    frames = torch.arange(T)[None] < lengths[:, None]
    assert torch.all(mask[~frames] == 0)
    any_dim = mask.amax(dim=-1)  # (B, T) frames with a keyframe
    real_rows = 0
    for b in range(B):
        if any_dim[b].nonzero().flatten().tolist() == real_keyframes(int(lengths[b]), interval):
            real_rows += 1
    assert 0.45 * B < real_rows < 0.75 * B
    assert (any_dim.sum(1) == 0).float().mean() > 0.05  # some text-only rows
    dims_used = mask.amax(dim=1)  # (B, D)
    positions_only = (dims_used[:, 3:67].amin(dim=1) == 1) & (dims_used[:, 67:].amax(dim=1) == 0) & (
        dims_used[:, :3].amax(dim=1) == 0)
    assert positions_only.sum() > 0
    again = sample_training_keyframe_mask(lengths, T, interval, D, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, mask)


# ---- bf16 autocast (CPU autocast applies CUDA bf16's casting rules) -------------------------
def test_each_stage_trains_and_the_chain_samples_under_bf16_autocast(cfg):
    """One training step of each stage and one sampling pass under torch.autocast("cpu", bf16):
    the VQ-VAE's quantizer stays float32 (its EMA sums and nearest-code search), nothing raises,
    and every loss and sample is finite."""
    from dataset import batch_keyframes
    from training.stages import DiffusionTrainingStep, GPTTrainingStep
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    torch.manual_seed(0)
    motion, lengths, text = torch.randn(2, 24, D), torch.tensor([24, 17]), torch.randn(2, TEXT_DIM)
    padding = torch.arange(24)[None] < lengths[:, None]
    rows = [torch.Generator().manual_seed(i) for i in range(2)]
    vq = KeyframeVQVAE(cfg).train()
    gpt = MotionGPT(cfg, TEXT_DIM).train()
    diffusion = make_diffusion(cfg).train()
    keyframes, keyframe_idx, keyframe_mask = batch_keyframes(motion, lengths, cfg.keyframe_interval)
    with bf16:
        vq_out = vq(keyframes, keyframe_mask)
    vq_out["loss"].backward()
    q = vq.quantizer
    assert bool(q.initialised) and q.codebook.dtype == q.ema_sum.dtype == torch.float32
    vq.eval()
    for step in (GPTTrainingStep(cfg, gpt, vq), DiffusionTrainingStep(cfg, diffusion)):
        with bf16:
            out = (step(motion, lengths, text, rows) if isinstance(step, GPTTrainingStep)
                   else step(motion, lengths, padding, text, rows))
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
    assert torch.isfinite(vq_out["loss"]) and vq.encoder.conv_in.weight.grad is not None
    assert gpt.head.weight.grad is not None and diffusion.model.in_proj.weight.grad is not None

    gpt.eval()
    diffusion.eval()
    torch.nn.init.normal_(diffusion.model.out_proj.weight, std=0.05,  # zero until trained: give it weights
                          generator=torch.Generator().manual_seed(0))
    diffusion.model.ema.steps.fill_(0)  # and sample with them, not with the average the step began
    num_tokens = keyframe_mask.sum(1)
    with bf16:
        codes = gpt.sample(text, num_tokens, TokenSampling(guidance_scale=2.0),
                           generator=torch.Generator().manual_seed(0))
        decoded = vq.decode(codes.clamp(max=cfg.vq_codebook_size - 1), keyframe_mask)
    values = torch.zeros(2, 24, D).scatter(1, keyframe_idx[..., None].expand(-1, -1, D), decoded.float().detach())
    pinned = torch.zeros(2, 24).scatter(1, keyframe_idx, 1.0)
    samples = {}
    for name, context in (("bf16", bf16), ("float32", contextlib.nullcontext())):
        with context, torch.no_grad():
            sample = diffusion.sample(text, values, pinned, padding, sampling=InbetweenSampling(3, 2.0),
                                      generator=torch.Generator().manual_seed(0))
        # the network's share: what it adds to the exact keyframe interpolation (the whole sample
        # would dilute bf16's error with the interpolation, which both share exactly)
        samples[name] = (sample - diffusion.model.interpolate(values, pinned[..., None].expand_as(values)))[padding]
    assert codes.shape == (2, int(num_tokens.max())) and torch.isfinite(decoded).all()
    assert sample.shape == (2, 24, D) and torch.isfinite(samples["bf16"]).all()
    assert samples["float32"].norm() > 0
    assert float((samples["bf16"] - samples["float32"]).norm() / samples["float32"].norm()) < 0.05


def test_vq_foot_weight_multiplies_the_feet_channels_only():
    from models.vqvae import feature_group_weights
    from utils import FOOT_SLICE, RIC_SLICE, VEL_SLICE
    plain, feet = feature_group_weights(263), feature_group_weights(263, foot_weight=4.0)
    assert torch.isclose(plain.mean(), torch.tensor(1.0)) and torch.isclose(feet.mean(), torch.tensor(1.0))
    ratio = feet / plain  # (263,): 4c on the feet's channels, c elsewhere
    left_toe = [RIC_SLICE.start + 3 * 9 + k for k in range(3)] + [VEL_SLICE.start + 3 * 10 + k for k in range(3)]
    knee = [RIC_SLICE.start + 3 * 3 + k for k in range(3)]  # joint 4 (left knee): untouched
    base = ratio[knee[0]]
    assert torch.allclose(ratio[knee], base) and base < 1.0
    assert torch.allclose(ratio[left_toe], 4 * base)
    assert torch.allclose(ratio[FOOT_SLICE], 4 * base)
    assert int((ratio > 2 * base).sum()) == 4 * 3 * 2 + 4  # 4 joints x (position, velocity) x 3, 4 contacts
