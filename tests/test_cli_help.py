"""The command lines: --help reads purpose, own options, then every config field described in its
group; misspelt options suggest the nearest name; every command in README.md still parses;
train.py warns before a fresh run overwrites checkpoints."""
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import sys

import pytest

import train
from config import CompositeConfig, ConfigError, config_from_args, field_docs
from conftest import ROOT, run_script

GROUPS = ["data", "text conditioning", "VQ-VAE", "GPT", "diffusion", "sampling", "optimisation and training",
          "runtime", "evaluation"]  # the config's `# ---- group ----` sections, in order (before any " (...)")


def squeeze(text: str) -> str:
    """text without any whitespace (help text is wrapped, at spaces and hyphens)."""
    return "".join(text.split())


def load_script(script: str):
    """The module of a script path relative to the project root (bench/x.py included)."""
    if "/" not in script:
        return importlib.import_module(script[:-3])
    name = "cli_" + script.replace("/", "_")[:-3]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
        sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def parse_as(script: str, argv: list[str]):
    """Parse argv as the script does: its make_cli_parser() (and the config, when it has config
    fields), else its parse_args(argv). SystemExit(2) on a command it refuses."""
    module = load_script(script)
    if hasattr(module, "make_cli_parser"):
        parser = module.make_cli_parser()
        args = parser.parse_args(argv)
        return (args, config_from_args(args, parser)) if hasattr(parser, "config_groups") else args
    assert hasattr(module, "parse_args"), f"give {script} a make_cli_parser() or parse_args(argv) to test it"
    return module.parse_args(argv)


def readme_commands() -> list[tuple[str, list[str]]]:
    """(script, argv) of every `python X.py ...` / `torchrun ... X.py ...` in README.md's shell code
    blocks, and of every inline `python X.py ...` span."""
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    lines, in_shell = [], None
    for line in text.replace("\\\n", " ").splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            in_shell = None if in_shell is not None else fence.group(1) in ("", "bash", "sh", "shell", "console")
        elif in_shell:
            lines.append(line)
    lines += re.findall(r"`(python3? [\w/]+\.py[^`]*)`", text)
    commands = []
    for line in lines:
        if not re.search(r"\b(python3?|torchrun)\b", line):  # curl examples and the like: not ours to parse
            continue
        tokens = shlex.split(line, comments=True)
        segments, current = [], []
        for token in tokens:
            if token in ("&&", "||", ";", "|"):
                segments.append(current)
                current = []
            else:
                current.append(token)
        segments.append(current)
        for seg in segments:
            if seg and seg[0] in ("python", "python3", "torchrun"):
                at = next((i for i, t in enumerate(seg) if t.endswith(".py")), None)
                if at is not None:
                    commands.append((seg[at], seg[at + 1:]))
    return commands


# ---------------------------------------------------------------------------------------
def test_every_config_field_has_a_description_and_a_named_group():
    docs = field_docs()
    names = [f.name for f in dataclasses.fields(CompositeConfig)]
    assert sorted(docs) == sorted(names)
    undocumented = [name for name in names if len(docs[name].help) < 3]
    assert not undocumented, f"fields without a trailing `# description` comment in config.py: {undocumented}"
    groups = [docs[name].group.split(" (")[0] for name in names]
    assert [g for g in dict.fromkeys(groups)] == GROUPS  # every field sits in one of the named groups, in order
    assert docs["vq_codebook_size"].group.startswith("VQ-VAE") and docs["fit_bones"].group.startswith("sampling")
    assert docs["lr"].help.startswith("peak learning rate")


def test_generate_help_starts_with_purpose_and_own_options_then_described_fields():
    proc = run_script("generate.py", "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert lines[0].startswith("usage: generate.py") and "--vq_width" not in out.split("\n\n")[0]
    headings = [i for i, line in enumerate(lines) if re.match(r"^\S.*:$", line)]
    titles = [lines[i][:-1] for i in headings]
    assert titles[:3] == ["options", "generation", "config"], titles
    assert [t.split(": ", 1)[1].split(" (")[0] for t in titles[3:]] == GROUPS
    purpose = out.index("Generate 3D human motion from text")
    first_field = out.index("--dataset_root STR")
    for flag in ("--prompt PROMPT", "--out OUT", "--format FORMAT", "--timeline TIMELINE", "--seconds"):
        assert purpose < out.index(f"\n  {flag}", purpose) < first_field, flag  # its help entry
    flat = squeeze(out)
    for name, doc in field_docs().items():
        assert squeeze(f"--{name}") in flat and squeeze(doc.help) in flat, name
    assert squeeze("--fit_bones BOOL decode joints with the skeleton's exact bone lengths") in flat
    assert squeeze("(default: true)") in flat and squeeze("(default: 64)") in flat


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "bench/bench_train.py"])
def test_each_config_script_lists_its_own_options_before_the_config(script):
    parser = load_script(script).make_cli_parser()
    text = parser.format_help()
    own = {"train.py": "--resume", "evaluate.py": "--train_evaluator", "bench/bench_train.py": "--steps"}[script]
    assert text.index(own) < text.index("\nconfig:") < text.index("config: data:") < text.index("--lr FLOAT")
    assert "--lr" not in parser.format_usage() and "[--config FILE.json] [--FIELD VALUE ...]" in parser.format_usage()


@pytest.mark.parametrize("script, argv, expected", [
    ("train.py", ["--stage", "vqae"], "invalid choice: 'vqae'"),
    ("train.py", ["--batchsize", "8"], "unknown option --batchsize (did you mean --batch_size?)"),
    ("evaluate.py", ["--guidance_swep", "1,2"], "did you mean --guidance_sweep?"),
    ("prepare_data.py", ["--bvh_dri", "x", "--out", "y"], "unknown option --bvh_dri (did you mean --bvh_dir?)"),
    ("visualize.py", ["m.npz", "--filmstirp"], "did you mean --filmstrip?"),
    ("generate.py", ["--format", "gf"], "(did you mean gif?)"),
    ("generate.py", ["--promt", "a person jumps", "--fit-bones", "false"],
     "unknown option --promt (did you mean --prompt?); unknown option --fit-bones (did you mean --fit_bones?)"),
])
def test_errors_name_the_nearest_valid_option(script, argv, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_as(script, argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    if script == "train.py" and argv[0] == "--stage":
        assert err.endswith("(did you mean vqvae?) (see --help)")


def test_misspelt_key_in_a_config_file_suggests_the_field():
    with pytest.raises(ConfigError, match=r"unknown config key 'bacth_size' \(did you mean batch_size\?\)"):
        CompositeConfig.from_dict({"bacth_size": 3})


def test_every_readme_command_parses():
    commands = readme_commands()
    scripts = {script for script, _ in commands}
    assert {"train.py", "generate.py", "evaluate.py", "prepare_data.py", "visualize.py"} <= scripts
    assert len(commands) >= 15, commands
    for script, argv in commands:
        try:
            parse_as(script, argv)
        except SystemExit as exc:
            pytest.fail(f"README command `{script} {' '.join(argv)}` no longer parses (exit {exc.code})")
    timeline = next(argv for script, argv in commands if script == "generate.py" and "--timeline" in argv)
    args, _ = parse_as("generate.py", timeline)
    assert args.format == ["npy", "gif"] and args.timeline.startswith("a person walks forward:4;")


@pytest.mark.parametrize("script", ["train.py", "generate.py", "evaluate.py", "bench/bench_train.py"])
def test_config_files_and_boolean_syntax_keep_working(script, tmp_path):
    saved = CompositeConfig(batch_size=8, fit_bones=False, amp=False, eval_ddim_steps="5,10").to_dict()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(saved))
    _, cfg = parse_as(script, ["--config", str(path)])
    assert cfg.to_dict() == saved  # every field of a saved config, booleans as JSON booleans
    _, cfg = parse_as(script, ["--config", str(path), "--fit_bones", "true", "--amp", "False",
                                       "--lr", "1e-3", "--eval_ddim_steps", "5,10,25"])
    assert cfg.fit_bones is True and cfg.amp is False and cfg.lr == 1e-3 and cfg.batch_size == 8
    assert cfg.eval_ddim_steps == "5,10,25"


def test_fresh_training_over_checkpoints_warns_first_and_points_to_resume(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in ("vqvae.pt", "gpt.pt"):
        (ckpt / name).write_bytes(b"stands for a finished checkpoint")
    # a missing data set stops each run right after the warning (exit 2), before any training
    common = ["--checkpoint_dir", ckpt, "--dataset_kind", "humanml3d", "--dataset_root", tmp_path / "none"]
    proc = run_script("train.py", *common)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("train.py: warning:") and "data set folder not found" in lines[1]
    assert f"{ckpt / 'vqvae.pt'}, {ckpt / 'gpt.pt'} exist" in lines[0]
    assert "overwrites them" in lines[0] and "step 300" in lines[0] and "python train.py --resume" in lines[0]
    assert train.main([*map(str, common), "--resume"]) == 2  # in-process: the same stop, no warning
    err = capsys.readouterr().err
    assert "data set folder not found" in err and "warning" not in err
    cfg = CompositeConfig(checkpoint_dir=str(ckpt), ckpt_interval=50)
    assert train.overwrite_warning(cfg, "diffusion", resume=False) is None  # diffusion.pt does not exist
    only_gpt = train.overwrite_warning(cfg, "gpt", resume=False)
    assert "gpt.pt exists" in only_gpt and "vqvae.pt" not in only_gpt and "step 50" in only_gpt
