import pytest

from linas_lib.config import ConfigError, load_profile


@pytest.mark.parametrize("name", ["smoke", "cpu", "full"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.data.resolution % 32 == 0
    assert len(profile.latency.targets) >= 6
    assert abs(sum(profile.data.split) - 1.0) < 1e-9


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  resolutoin: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key data\.resolutoin"):
        load_profile(path)


def test_wrong_type_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("supernet:\n  epochs: many\n")
    with pytest.raises(ConfigError, match="supernet.epochs must be int"):
        load_profile(path)


def test_missing_target_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("latency:\n  targets:\n    - {name: x}\n")
    with pytest.raises(ConfigError, match="missing key latency.targets\\[0\\].budget_ms"):
        load_profile(path)


def test_unknown_profile_lists_known():
    with pytest.raises(ConfigError, match="known profiles: .*smoke"):
        load_profile("nope")
