"""CompositeConfig: keyword construction, JSON round trip, CLI overrides and their errors."""
import json
import subprocess
import sys

import pytest

from config import CompositeConfig, ConfigError, parse_config
from conftest import ROOT


def test_keyword_construction_and_round_trip():
    cfg = CompositeConfig(batch_size=64, lr=2e-4, keyframe_interval=5)
    assert (cfg.batch_size, cfg.lr, cfg.keyframe_interval) == (64, 2e-4, 5)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert CompositeConfig.from_dict(data) == cfg
    assert CompositeConfig.humanml3d().gpt_n_embd > cfg.gpt_n_embd


def test_cli_overrides_are_typed_and_file_is_read(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"batch_size": 8, "text_encoder": "minilm"}))
    cfg = parse_config(["--config", str(path), "--lr", "0.001", "--amp", "false", "--batch_size", "16"])
    assert cfg.batch_size == 16 and cfg.lr == 0.001 and cfg.amp is False and cfg.text_encoder == "minilm"


@pytest.mark.parametrize("overrides, field", [
    ({"batch_size": "many"}, "batch_size"),
    ({"text_encoder": "bert"}, "text_encoder"),
    ({"keyframe_interval": 0}, "keyframe_interval"),
    ({"top_p": 1.5}, "top_p"),
    ({"amp": "maybe"}, "amp"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        CompositeConfig(**overrides)


def test_unknown_key_in_dict_is_refused():
    with pytest.raises(ConfigError, match="unknown config key 'bacth_size'"):
        CompositeConfig.from_dict({"bacth_size": 3})


@pytest.mark.parametrize("argv, expected", [
    (["--bacth_size", "3"], "--bacth_size"),
    (["--batch_size", "x"], "batch_size"),
    (["--device", "tpu"], "device"),
])
def test_cli_errors_are_one_line_with_exit_code_2(argv, expected):
    proc = subprocess.run([sys.executable, "config.py", *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_help_lists_fields_with_defaults():
    proc = subprocess.run([sys.executable, "config.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--keyframe_interval" in proc.stdout and "--batch_size" in proc.stdout
    assert "(default: 64)" in proc.stdout
