"""The Composite object and the notebook API over it: same numbers for the same seed."""
import copy
import hashlib

import numpy as np
import pytest
import torch

from config import CompositeConfig
from generate import generate_composite
from pipeline import Composite, SamplingOptions
from text_encoder import load_text_encoder
from utils import FEATURE_DIM, keyframe_indices

# Computed with the seed's generate_composite (before the Composite object existed) on the
# models below: random weights from torch.manual_seed(0), MiniLM text, identity statistics.
# The in-betweener's form and the bone fit are the seed's (the defaults changed later, measured
# in the in-betweening quality work); the sizes are tiny.
PINNED_MOTION_SHA256 = "684efc8f73b9c81c2dc0ab96a4a7b5a6c48d64f62c36023482af5e004535704b"
SEED_FORM = dict(diff_keyframe_interp="linear", diff_exact_keyframes=False, diff_residual_envelope=False,
                 diff_patch_conv=0, diff_ema_decay=0.0, fit_bones=False)
PINNED_SIZES = dict(vq_width=32, vq_code_dim=16, vq_codebook_size=32, vq_depth=1, gpt_n_embd=32, gpt_n_layer=1,
                    gpt_n_head=2, diff_n_embd=32, diff_n_layer=1, diff_n_head=2, diff_timesteps=100,
                    num_inbetween_steps=4, text_encoder="minilm", **SEED_FORM)


# Today's default in-betweener (cubic interpolation, residual envelope, patch filter, weight
# average, fit_bones) at the tiny sizes above, through Composite.sample's default path: random
# weights from torch.manual_seed(0), then the denoiser's output layer (zero in a fresh model, which
# would make the diffusion return the keyframes' interpolation) re-initialised from a seeded
# generator, so the checksum depends on every denoiser weight.
DEFAULT_SIZES = {k: v for k, v in PINNED_SIZES.items() if k not in SEED_FORM}
PINNED_DEFAULT_SHA256 = "d25a865da6bdf98dcf59f6aa895c2238c4b9ff5729934b05f8972644787b8dad"


def motion_checksum(motion: np.ndarray) -> str:
    """sha256 of the motion rounded to 0.1 mm (float rounding noise below that is ignored)."""
    return hashlib.sha256(np.round(np.asarray(motion, dtype=np.float64), 4).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def random_models():
    cfg = CompositeConfig(**PINNED_SIZES)
    torch.manual_seed(0)
    encoder = load_text_encoder(cfg)
    c = Composite.build(cfg, encoder, np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32),
                        torch.device("cpu"))
    return cfg, (c.vqvae, c.gpt, c.denoiser, c.diffusion, c.text_encoder, c.mean, c.std, FEATURE_DIM)


def test_generate_composite_output_is_pinned(random_models):
    cfg, models = random_models
    motion, keyframes, keyframe_idx = generate_composite(*models, cfg, prompt="a person walks forward",
                                                         length=60, seed=11)
    assert motion.shape == (60, 22, 3)
    assert motion_checksum(motion) == PINNED_MOTION_SHA256
    assert np.ptp(motion[:, :, 1]) > 0.01  # a real, non-degenerate motion is being pinned


def test_composite_sample_result_and_keyframe_model_error(random_models):
    cfg, models = random_models
    diffusion = copy.deepcopy(models[3])  # its denoiser's output layer starts at zero: give it weights
    torch.nn.init.normal_(diffusion.model.out_proj.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    composite = Composite(models[0], models[1], diffusion.model, diffusion, *models[4:7], cfg)
    result = composite.sample(["a person walks forward", "someone waves"], [60, 41],
                              SamplingOptions(seed=11), return_timings=True)
    first, second = result.motions
    assert first.joints.shape == (60, 22, 3) and second.features.shape == (41, 263)
    assert np.array_equal(first.keyframe_idx, keyframe_indices(60, cfg.keyframe_interval))
    assert set(result.timings) == {"text", "gpt", "vq_decode", "diffusion", "joints"}
    # random weights: the network's own prediction is away from the keyframes it was given,
    # although the returned motion passes through them (imputation)
    assert np.allclose(first.joints[first.keyframe_idx] - first.joints[first.keyframe_idx, :1],
                       first.keyframes - first.keyframes[:, :1], atol=1e-4)
    assert first.keyframe_model_error is not None and first.keyframe_model_error > 0.01
    interp = composite.sample("a person walks forward", 60, SamplingOptions(seed=11, mode="interpolate"))
    assert interp.motions[0].keyframe_model_error is None
    with pytest.raises(ValueError, match="mode must be one of"):
        composite.sample("a person walks", 60, SamplingOptions(mode="bogus"))


def test_loaded_checkpoints_take_the_run_time_precision_and_length_limit(tiny_trained):
    cfg = CompositeConfig(checkpoint_dir=tiny_trained["checkpoint_dir"], text_encoder="minilm",
                          gpt_weight_dtype="int8", diff_weight_dtype="bfloat16", max_generate_length=196)
    composite = Composite.from_checkpoints(cfg)
    assert composite.gpt.weight_dtype == "int8" and composite.diffusion.weight_dtype == "bfloat16"
    motion = composite.sample("a person walks forward", 60, SamplingOptions(seed=1)).motions[0]
    assert motion.joints.shape == (60, 22, 3) and np.isfinite(motion.joints).all()
    small = Composite.from_checkpoints(cfg.replace(max_generate_length=400))
    assert small.cfg.max_generate_length == 196  # capped at the length the models were trained on
    with pytest.raises(ValueError, match="above the maximum of 196 frames"):
        small.sample("a person walks forward", 197)


@pytest.fixture(scope="module")
def default_form():
    """(a builder of) the tiny default-form composite whose denoiser output layer is not zero;
    scale multiplies every denoiser weight."""
    cfg = CompositeConfig(**DEFAULT_SIZES)
    encoder = load_text_encoder(cfg)

    def build(scale: float = 1.0) -> Composite:
        torch.manual_seed(0)
        composite = Composite.build(cfg, encoder, np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32),
                                    torch.device("cpu"))
        torch.nn.init.normal_(composite.denoiser.out_proj.weight, std=0.05, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for param in composite.denoiser.parameters():
                param.mul_(scale)
        return composite
    return build


def test_default_path_output_is_pinned_and_runs_the_diffusion(default_form):
    composite = default_form()
    assert composite.denoiser.meets_keyframes and composite.cfg.fit_bones  # today's default form
    motion = composite.sample("a person walks forward", 60, SamplingOptions(seed=11)).motions[0]
    assert motion.joints.shape == (60, 22, 3) and np.ptp(motion.joints[:, :, 1]) > 0.01
    assert motion_checksum(motion.joints) == PINNED_DEFAULT_SHA256
    # the diffusion moved the motion away from the interpolation it refines (same keyframes)
    interp = composite.sample("a person walks forward", 60, SamplingOptions(seed=11, mode="interpolate",
                                                                           interpolation="cubic")).motions[0]
    assert np.array_equal(interp.keyframe_idx, motion.keyframe_idx)
    assert np.abs(motion.features - interp.features).max() > 1e-2
    # and so the checksum sees the denoiser's weights: scaled by -3 they give another motion
    flipped = default_form(-3.0).sample("a person walks forward", 60, SamplingOptions(seed=11)).motions[0]
    assert motion_checksum(flipped.joints) != PINNED_DEFAULT_SHA256


def test_cubic_interpolation_row_passes_the_same_keyframes_on_another_curve(default_form):
    composite = default_form()
    linear, cubic = (composite.sample("a person walks forward", 60, SamplingOptions(seed=5, mode="interpolate",
                                                                                    interpolation=kind)).motions[0]
                     for kind in ("linear", "cubic"))
    idx = linear.keyframe_idx
    assert np.array_equal(idx, cubic.keyframe_idx)
    np.testing.assert_allclose(cubic.features[idx], linear.features[idx], atol=1e-5)  # the GPT's keyframes
    between = np.setdiff1d(np.arange(60), idx)
    assert np.abs(cubic.features[between] - linear.features[between]).max() > 1e-3


def test_bf16_in_betweener_residual_matches_float32(tiny_trained):
    """The trained in-betweener with bfloat16 weights adds nearly the same residual to the
    keyframes' interpolation as with float32 (compared on the residual: the exact interpolation
    both share would dilute the error)."""
    cfg = CompositeConfig(checkpoint_dir=tiny_trained["checkpoint_dir"], text_encoder="minilm")
    residuals = {}
    for dtype in ("float32", "bfloat16"):
        composite = Composite.from_checkpoints(cfg.replace(diff_weight_dtype=dtype))
        motion = composite.sample("a person walks forward", 60, SamplingOptions(seed=1)).motions[0]
        interp = composite.sample("a person walks forward", 60, SamplingOptions(
            seed=1, mode="interpolate", interpolation=composite.denoiser.interp_kind)).motions[0]
        assert np.array_equal(interp.keyframe_idx, motion.keyframe_idx)
        residuals[dtype] = motion.features - interp.features  # (60, 263)
    error = np.linalg.norm(residuals["bfloat16"] - residuals["float32"]) / np.linalg.norm(residuals["float32"])
    assert np.abs(residuals["float32"]).max() > 1e-2 and error < 0.05  # measured 0.004
