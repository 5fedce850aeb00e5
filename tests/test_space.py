import numpy as np
import pytest

from linas_lib import space


def test_size_matches_spec():
    assert space.N_ARCHS == 21**5 == 4_084_101
    assert space.LINAS_SPACE.size == space.N_ARCHS


def test_op_key_format_and_errors():
    assert space.op_key("Conv3x3", 50) == "Conv3x3_w50"
    assert space.parse_op_key("DilatedDWSep_w100") == ("DilatedDWSep", 100)
    with pytest.raises(ValueError, match="unknown op"):
        space.op_key("Conv9x9", 50)
    with pytest.raises(ValueError, match="unknown width"):
        space.op_key("Conv3x3", 60)
    with pytest.raises(ValueError, match="malformed"):
        space.parse_op_key("Conv3x3-50")


def test_encode_decode_roundtrip_extremes_and_vectorised():
    assert space.encode(np.zeros(5, int)) == 0
    assert space.encode(np.full(5, 20)) == space.N_ARCHS - 1
    codes = np.random.default_rng(0).integers(0, space.N_ARCHS, 1000)
    assert np.array_equal(space.encode(space.decode(codes)), codes)
    assert space.decode(np.int64(21)).tolist() == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError):
        space.decode(space.N_ARCHS)


def test_arch_string_roundtrip():
    rng = np.random.default_rng(1)
    for choices in space.LINAS_SPACE.sample(rng, 50):
        text = space.arch_string(choices)
        assert len(text.split("-")) == 5
        assert np.array_equal(space.parse_arch(text), choices)
    with pytest.raises(ValueError, match="5"):
        space.parse_arch("Conv3x3_w50-Conv3x3_w50")


def test_all_archs_in_code_order():
    every = space.all_archs()
    assert every.shape == (space.N_ARCHS, 5)
    idx = [0, 12345, space.N_ARCHS - 1]
    assert space.encode(every[idx].astype(np.int64)).tolist() == idx


def test_mutation_changes_one_or_two_layers_and_is_seeded():
    sp = space.LINAS_SPACE
    parent = sp.sample(np.random.default_rng(0), 1)[0]
    for seed in range(50):
        child = sp.mutate(parent, np.random.default_rng(seed))
        assert 1 <= int((child != parent).sum()) <= 2
    a = sp.mutate(parent, np.random.default_rng(7))
    b = sp.mutate(parent, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_crossover_takes_each_layer_from_a_parent():
    sp = space.LINAS_SPACE
    a, b = np.zeros(5, np.int64), np.full(5, 20, np.int64)
    child = sp.crossover(a, b, np.random.default_rng(3))
    assert all(c in (0, 20) for c in child)


def test_one_hot_marks_one_choice_per_layer():
    tiny = space.SearchSpace(n_layers=3, n_choices=4)
    hot = tiny.one_hot([[0, 3, 1], [2, 2, 2]])
    assert hot.shape == (2, 12) and hot.sum(axis=1).tolist() == [3.0, 3.0]
    assert np.flatnonzero(hot[0]).tolist() == [0, 7, 9]
    with pytest.raises(ValueError, match="0..3"):
        tiny.one_hot([[0, 4, 1]])
