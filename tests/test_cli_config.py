"""The CLI is strict and documented; configs reject unknown keys naming the key and the file."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vqstack.cli import build_parser, main
from vqstack.config import load_config
from vqstack.errors import ConfigError


def _parsers(parser: argparse.ArgumentParser, prefix: str = "vqstack") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _parsers(sub, f"{prefix} {name}")
    return out


def test_every_option_of_every_command_has_help() -> None:
    names = []
    for name, parser in _parsers(build_parser()):
        names.append(name)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"{name}: option {action.option_strings or action.dest}"
    for expected in ("vqstack probe", "vqstack frames", "vqstack extract", "vqstack fuse fit", "vqstack fuse predict",
                     "vqstack features ls", "vqstack demo", "vqstack train", "vqstack weights ls"):
        assert expected in names


def test_help_shows_only_defaults_that_say_something() -> None:
    shown = 0
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        shown += text.count("(default: ")
    assert shown > 10  # real defaults (fps, device, ...) are still shown


def test_unknown_flag_is_an_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as err:
        main(["frames", "--videos", "x", "--out", "y", "--fsp", "2"])
    assert err.value.code == 2
    assert "--fsp" in capsys.readouterr().err


def test_fuse_help_does_not_import_torch() -> None:
    code = "import sys; from vqstack.cli import main\ntry:\n main(['fuse','--help'])\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_checking_a_damage_recipe_does_not_import_torch() -> None:
    recipe = Path(__file__).parents[1] / "configs" / "train" / "frame_iqa_clive_damage_wild.yml"
    code = (f"import sys; from vqstack.branches.recipes import load_recipe; load_recipe({str(recipe)!r})\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@dataclass(frozen=True)
class Inner:
    rate: float = 2.0
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outer:
    path: Path
    inner: Inner = field(default_factory=Inner)
    mode: str = "a"


def test_config_unknown_and_mistyped_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("path: x.csv\ninner: {rate: 3, names: [a, b]}\n")
    cfg = load_config(good, Outer)
    assert cfg.inner.rate == 3.0 and cfg.inner.names == ["a", "b"] and cfg.path == Path("x.csv")
    bad = tmp_path / "bad.yml"
    bad.write_text("path: x.csv\ninner: {rat: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: unknown key 'inner\.rat' \(did you mean 'rate'\?\)"):
        load_config(bad, Outer)
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("path: x.csv\ninner: {rate: fast}\n")
    with pytest.raises(ConfigError, match=r"wrong\.yml: key 'inner\.rate' must be a number"):
        load_config(wrong, Outer)
    missing = tmp_path / "missing.yml"
    missing.write_text("inner: {rate: 1}\n")
    with pytest.raises(ConfigError, match=r"missing required key 'path'"):
        load_config(missing, Outer)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml", Outer)


def test_config_base_is_overridden_mapping_by_mapping_and_lists_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yml").write_text("path: x.csv\nmode: b\ninner: {rate: 3, names: [a, b]}\n")
    (tmp_path / "sub" / "mid.yml").write_text("base: ../root.yml\ninner: {names: [c]}\n")
    (tmp_path / "sub" / "leaf.yml").write_text("base: mid.yml\ninner: {rate: 5}\n")
    leaf = load_config(tmp_path / "sub" / "leaf.yml", Outer)
    assert leaf == Outer(path=Path("x.csv"), inner=Inner(rate=5.0, names=["c"]), mode="b")
    assert load_config(tmp_path / "root.yml", Outer).inner.names == ["a", "b"]


@pytest.mark.parametrize(("files", "pattern"), [
    ({"typo.yml": "base: root.yml\ninner: {rat: 3}\n", "root.yml": "path: x.csv\n"},
     r"typo\.yml \(over base .*root\.yml\): unknown key 'inner\.rat'"),
    ({"lost.yml": "base: nowhere.yml\n"}, r"lost\.yml: base config .*nowhere\.yml not found"),
    ({"a.yml": "base: b.yml\npath: x.csv\n", "b.yml": "base: a.yml\n"},
     r"makes a cycle .*a\.yml -> .*b\.yml -> .*a\.yml"),
    ({"num.yml": "base: 3\n"}, r"num\.yml: key 'base' must be a path"),
], ids=["unknown-key", "missing-base", "cycle", "not-a-path"])
def test_config_base_errors_name_the_file(tmp_path: Path, files: dict[str, str], pattern: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(tmp_path / next(iter(files)), Outer)


def test_recipe_variants_differ_from_their_base_only_where_they_say() -> None:
    from vqstack.branches.recipes import load_recipe
    from vqstack.config import to_dict

    train = Path(__file__).parents[1] / "configs" / "train"
    base = to_dict(load_recipe(train / "frame_iqa_clive_damage_rank.yml"))
    c400 = to_dict(load_recipe(train / "frame_iqa_clive_damage_c400.yml"))
    assert c400["data"]["train_crop"] == 400 and base["data"]["train_crop"] == 288
    for recipe in (base, c400):
        recipe.pop("name"), recipe.pop("output"), recipe["data"].pop("train_crop")
    assert c400 == base


def test_shipped_fusion_configs_are_valid() -> None:
    from vqstack.fusion.config import load_fusion_config

    configs = sorted((Path(__file__).parents[1] / "configs" / "fusion").glob("*.yml"))
    assert configs
    for path in configs:
        load_fusion_config(path)


def test_shipped_train_recipes_are_valid() -> None:
    from vqstack.branches.recipes import load_recipe

    recipes = sorted((Path(__file__).parents[1] / "configs" / "train").glob("*.yml"))
    assert recipes
    for path in recipes:
        load_recipe(path)


def test_probe_command(bad_inputs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["probe", str(bad_inputs["rotated"]), str(bad_inputs["zero_byte"])]) == 1
    out, err = capsys.readouterr()
    assert "rotated.mp4" in out and "\t90\t" in out
    assert "zero.mp4: empty file" in err
