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


@pytest.mark.parametrize("yaml_text, message", [
    ("threads: -2\n", r"profile: threads = -2 must be > 0"),
    ("device: tpu\n", r"profile: device = 'tpu' must be one of cpu, cuda"),
    ("data:\n  max_images: -5\n", r"data: max_images = -5 must be >= 0"),
    ("data:\n  resolution: 100\n", r"data: resolution = 100 must be a positive multiple of 32"),
    ("data:\n  split: [0.5, 0.5, 0.5]\n", r"data: split = \[0.5, 0.5, 0.5\] must be three"),
    ("data:\n  split: [0.8, 0.2, 0.0]\n", r"data: split = \[0.8, 0.2, 0.0\] must be three .* > 0"),
    ("latency:\n  targets:\n    - {name: x, budget_ms: 1.0}\n    - {name: x, budget_ms: 2.0}\n",
     r"latency: targets: x listed more than once"),
    ("encoder:\n  batch_size: 0\n", r"encoder: batch_size = 0 must be > 0"),
    ("supernet:\n  sampling: bogus\n", r"supernet: sampling = 'bogus' must be one of uniform, sandwich"),
    ("supernet:\n  lr_weights: -0.1\n", r"supernet: lr_weights = -0.1 must be > 0"),
    ("supernet:\n  epochs: -1\n", r"supernet: epochs = -1 must be >= 0"),
    ("search:\n  pop_size: 0\n", r"search: pop_size = 0 must be > 0"),
    ("search:\n  seeds: [0, 1, 1]\n", r"search: seeds = \[0, 1, 1\] must be distinct integers >= 0"),
    ("search:\n  final_seeds: [-1]\n", r"search: final_seeds = \[-1\] must be distinct integers >= 0"),
    ("supernet:\n  pad_seeds: [2, 2]\n", r"supernet: pad_seeds = \[2, 2\] must be distinct"),
    ("search:\n  alpha_uniform_mix: .nan\n", r"search.alpha_uniform_mix must be a finite number, got nan"),
    ("latency:\n  n_validation_archs: -1\n", r"latency: n_validation_archs = -1 must be >= 0"),
    ("latency:\n  targets:\n    - {name: x, budget_ms: -1.0}\n", r"latency.targets\[0\]: budget_ms = -1.0 must be > 0"),
    ("latency:\n  targets:\n    - {name: x, budget_ms: 1.0, scope: bogus}\n", r"scope = 'bogus' must be one of"),
    ("latency:\n  measure: {max_cv: .nan}\n", r"latency.measure.max_cv must be a finite number"),
])
def test_out_of_range_values_name_the_file_and_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=r"bad\.yaml: .*" + message):
        load_profile(path)


def test_a_yaml_merge_key_still_merges(tmp_path):
    path = tmp_path / "merged.yaml"
    path.write_text("supernet: {<<: {epochs: 1, batch_size: 2}, batch_size: 3}\n")
    cfg = load_profile(path).supernet
    assert (cfg.epochs, cfg.batch_size) == (1, 3)


def test_a_key_given_twice_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("search:\n  eval_budget: 10\n  eval_budget: 20\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML: .*key 'eval_budget' given twice"):
        load_profile(path)


def test_measure_and_quiet_settings_refuse_nan_and_name_the_field():
    from linas_lib.latency.quiet import QuietSettings
    from linas_lib.latency.settings import MeasureSettings

    with pytest.raises(ValueError, match=r"max_cv = nan must be a finite number > 0"):
        MeasureSettings(max_cv=float("nan"))
    with pytest.raises(ValueError, match=r"max_time_ms = nan must be"):
        MeasureSettings(max_time_ms=float("nan"))
    with pytest.raises(ValueError, match=r"repeats = 0 must be >= 1"):
        MeasureSettings(repeats=0)
    with pytest.raises(ValueError, match=r"max_other_cores = nan must be a finite number >= 0"):
        QuietSettings(max_other_cores=float("nan"))


def test_a_multi_fidelity_choice_needs_fine_tune_epochs():
    from linas_lib.config import SearchConfig

    with pytest.raises(ValueError, match=r"choice_epochs must be >= 1 when search.choice_topk > 0"):
        SearchConfig(choice_topk=4, choice_epochs=0)
    assert SearchConfig(choice_topk=0, choice_epochs=0).choice_topk == 0  # WS-only: no fine-tune


@pytest.mark.parametrize("studies, wanted", [
    ("[{name: a, methods: [random], seeds: [1]}, {name: a, methods: [random], seeds: [2]}]", "distinct names"),
    ("[{name: a, methods: [], seeds: [1]}]", "at least one method"),
    ("[{name: a-b, methods: [random], seeds: [1]}]", "letters, digits and _"),
    ("[{name: a, methods: [random], seeds: [1, 1]}]", "seeds"),
    ("[{name: a, methods: [random]}]", r"missing key records.studies\[0\].seeds"),
])
def test_a_bad_records_study_names_the_file_and_the_study(tmp_path, studies, wanted):
    path = tmp_path / "bad.yaml"
    path.write_text(f"records:\n  studies: {studies}\n")
    with pytest.raises(ConfigError, match=rf"bad\.yaml: .*{wanted}"):
        load_profile(path)
