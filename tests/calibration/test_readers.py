"""Data readers, sample validation and the batch policy."""

from __future__ import annotations

import numpy as np
import pytest
from calib_models import mlp_data, write_npz
from onnxruntime.quantization import CalibrationDataReader

from onnxsmith.calibration import OrtReaderAdapter, SampleValidator, calibrate, open_data
from onnxsmith.calibration.readers import UNNAMED, FileSource, ReaderSource, directory_source
from onnxsmith.errors import DataInputError


def _runs(model, data, **policy) -> list[dict[str, np.ndarray]]:
    validator = SampleValidator(model, **policy)
    return [feed for sample in open_data(data) for feed in validator.feeds(sample)]


def _error(model, data, **policy) -> str:
    with pytest.raises(DataInputError) as info:
        _runs(model, data, **policy)
    return str(info.value)


# -- sources ------------------------------------------------------------------------------------

def test_npz_file_is_one_sample_keyed_by_input_name(tmp_path, two_input_model):
    a, b = np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32)
    path = write_npz(tmp_path, "s.npz", a=a, b=b)
    (feed,) = _runs(two_input_model, path)
    assert set(feed) == {"a", "b"}
    np.testing.assert_array_equal(feed["a"], a)


def test_npy_file_feeds_the_only_input(tmp_path, mlp_model):
    array = np.arange(32, dtype=np.float32).reshape(2, 16)
    np.save(tmp_path / "s.npy", array)
    (feed,) = _runs(mlp_model, tmp_path / "s.npy")
    np.testing.assert_array_equal(feed["x"], array)


def test_positional_npz_is_an_unnamed_array(tmp_path, mlp_model):
    np.savez(tmp_path / "s.npz", np.ones((1, 16), np.float32))
    assert set(_runs(mlp_model, tmp_path / "s.npz")[0]) == {"x"}


def test_directory_reads_npz_and_npy_in_natural_order_and_ignores_other_files(tmp_path):
    for i in (10, 2, 1):
        write_npz(tmp_path, f"sample{i}.npz", x=np.full((1, 16), i, np.float32))
    (tmp_path / "README.txt").write_text("not data")
    source = open_data(tmp_path)
    assert [s.label.rsplit("/", 1)[-1] for s in source] == ["sample1.npz", "sample2.npz", "sample10.npz"]
    assert len(source) == 3


def test_empty_directory_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(DataInputError, match="holds no .npz or .npy files") as info:
        open_data(tmp_path)
    assert "numpy.savez" in str(info.value)


def test_missing_file_and_directory_are_errors(tmp_path):
    with pytest.raises(DataInputError, match="calibration data not found: .*nothing.npz"):
        open_data(tmp_path / "nothing.npz")
    with pytest.raises(DataInputError, match="calibration data directory not found"):
        directory_source(tmp_path / "none")


def test_wrong_suffix_and_corrupt_archive_are_errors(tmp_path, mlp_model):
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(DataInputError, match="is not an .npz or .npy file"):
        FileSource([tmp_path / "data.csv"])
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    message = _error(mlp_model, tmp_path / "bad.npz")
    assert message.startswith(f"cannot read calibration data {tmp_path / 'bad.npz'}")
    (tmp_path / "text.npz").write_text("hello")  # numpy would call it pickled data
    assert _error(mlp_model, tmp_path / "text.npz").startswith(
        f"{tmp_path / 'text.npz'} is not an .npz or .npy file written by numpy")


def test_pickled_arrays_are_refused(tmp_path, mlp_model):
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert "pickled" in _error(mlp_model, tmp_path / "obj.npy")


def test_file_specs_come_from_headers_without_loading(tmp_path):
    write_npz(tmp_path, "s.npz", x=np.zeros((3, 16), np.float32))
    np.save(tmp_path / "t.npy", np.zeros((2, 16), np.float16))
    specs = dict(open_data(tmp_path).specs())
    assert specs[str(tmp_path / "s.npz")]["x"].shape == (3, 16)
    assert specs[str(tmp_path / "t.npy")][UNNAMED].dtype == np.float16


def test_python_sources(mlp_model):
    one = {"x": np.ones((1, 16), np.float32)}
    assert len(_runs(mlp_model, one)) == 1
    assert len(_runs(mlp_model, np.ones((1, 16), np.float32))) == 1
    assert len(_runs(mlp_model, [one, one, one])) == 3
    assert open_data(lambda: iter([one])).reiterable
    generator = open_data(x for x in [one, one])
    assert not generator.reiterable
    assert len(list(generator)) == 2
    with pytest.raises(DataInputError, match="can be read only once and was already read"):
        list(generator)


def test_a_sample_that_is_not_a_dict_is_named(mlp_model):
    assert _error(mlp_model, [{"x": np.ones((1, 16), np.float32)}, "text"]).startswith(
        "sample 1 is a str, not a dict of arrays")


def test_unsupported_object_is_an_error():
    with pytest.raises(DataInputError, match="cannot read calibration data from a int"):
        open_data(3)


# -- validation ---------------------------------------------------------------------------------

def test_wrong_input_name_names_the_sample_the_array_and_a_suggestion(tmp_path, mlp_model):
    path = write_npz(tmp_path, "s.npz", xx=np.ones((1, 16), np.float32))
    assert _error(mlp_model, path) == (
        f"{path}: array 'xx' is not a model input (did you mean 'x'? the model's inputs are: x (float32[N,16]))")


def test_missing_input_array(two_input_model):
    message = _error(two_input_model, [{"a": np.ones((1, 4), np.float32)}])
    assert message.startswith("sample 0: no array for model input 'b'")
    assert "a (float32[N,4]), b (float32[N,4])" in message


def test_wrong_dtype_says_expected_got_and_how_to_convert(mlp_model):
    assert _error(mlp_model, [{"x": np.ones((1, 16), np.float64)}]) == (
        "sample 0: input 'x' expects float32, got float64 (convert it with array.astype(numpy.float32))")


def test_wrong_static_dimension(conv_model):
    message = _error(conv_model, [{"x": np.ones((1, 3, 9, 8), np.float32)}])
    assert message == ("sample 0: input 'x' expects shape [1,3,8,8], got [1, 3, 9, 8] "
                       "(dimension 2 must be 8 (named dimensions may take any size))")


def test_wrong_rank(mlp_model):
    assert _error(mlp_model, [{"x": np.ones((1, 2, 16), np.float32)}]).startswith(
        "sample 0: input 'x' expects rank 2 [N,16], got rank 3 [1, 2, 16]")


def test_named_dimension_must_agree_across_inputs(two_input_model):
    data = [{"a": np.ones((2, 4), np.float32), "b": np.ones((3, 4), np.float32)}]
    assert _error(two_input_model, data, batch="exact").startswith(
        "sample 0: dimension 'N' is 2 in input 'a' but 3 in input 'b'")


def test_unnamed_array_for_a_two_input_model(tmp_path, two_input_model):
    np.save(tmp_path / "s.npy", np.ones((1, 4), np.float32))
    assert "holds an unnamed array but the model has 2 inputs" in _error(two_input_model, tmp_path / "s.npy")


def test_every_file_is_checked_before_anything_runs(tmp_path, mlp_model):
    for i in range(5):
        write_npz(tmp_path, f"{i}.npz", x=np.ones((1, 16), np.float32))
    write_npz(tmp_path, "5.npz", x=np.ones((1, 15), np.float32))
    runs = []
    with pytest.raises(DataInputError, match=r"5\.npz: input 'x' expects shape \[N,16\]"):
        calibrate(mlp_model, tmp_path, progress=runs.append)
    assert runs == []


def test_one_shot_iterators_are_checked_sample_by_sample(mlp_model):
    def samples():
        yield {"x": np.ones((1, 16), np.float32)}
        yield {"x": np.ones((1, 16), np.int32)}

    with pytest.raises(DataInputError, match="sample 1: input 'x' expects float32, got int32"):
        calibrate(mlp_model, samples())


# -- batch policy -------------------------------------------------------------------------------

def test_static_batch_one_splits_stacked_samples(conv_model):
    stacked = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    feeds = _runs(conv_model, [{"x": stacked}])
    assert [f["x"].shape for f in feeds] == [(1, 3, 8, 8)] * 4
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in feeds]), stacked)
    assert "expects shape [1,3,8,8], got [4, 3, 8, 8]" in _error(conv_model, [{"x": stacked}], batch="exact")


def test_missing_batch_axis_is_added(conv_model, mlp_model):
    assert _runs(conv_model, [np.zeros((3, 8, 8), np.float32)])[0]["x"].shape == (1, 3, 8, 8)
    assert _runs(mlp_model, [np.zeros(16, np.float32)])[0]["x"].shape == (1, 16)


def test_batch_size_bounds_rows_per_run_for_named_batch(mlp_model):
    feeds = _runs(mlp_model, [{"x": np.zeros((10, 16), np.float32)}], batch_size=4)
    assert [f["x"].shape[0] for f in feeds] == [4, 4, 2]
    assert len(_runs(mlp_model, [{"x": np.zeros((10, 16), np.float32)}])) == 1


def test_bad_policy_values(mlp_model):
    with pytest.raises(DataInputError, match="unknown batch policy 'loose'"):
        SampleValidator(mlp_model, batch="loose")
    with pytest.raises(DataInputError, match="batch_size must be at least 1"):
        SampleValidator(mlp_model, batch_size=0)


# -- onnxruntime's CalibrationDataReader, both ways -----------------------------------------------

class _OrtStyleReader(CalibrationDataReader):
    """A reader written the way onnxruntime's examples write them."""

    def __init__(self, data: list[dict[str, np.ndarray]]) -> None:
        self.data = data
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.data)


def test_reading_an_onnxruntime_reader(mlp_model):
    data = mlp_data(3)
    source = open_data(_OrtStyleReader(data))
    assert isinstance(source, ReaderSource) and source.reiterable
    assert [s.label for s in source] == ["reader sample 0", "reader sample 1", "reader sample 2"]
    assert len(list(source)) == 3  # rewound


def test_reader_without_rewind_is_one_shot(mlp_model):
    class Once:
        def __init__(self):
            self.items = iter(mlp_data(2))

        def get_next(self):
            return next(self.items, None)

    source = open_data(Once())
    assert not source.reiterable
    list(source)
    with pytest.raises(DataInputError, match="give the reader a rewind"):
        list(source)


def test_adapter_is_an_onnxruntime_reader(tmp_path, conv_model):
    write_npz(tmp_path, "0.npz", x=np.zeros((2, 3, 8, 8), np.float32))
    adapter = OrtReaderAdapter(tmp_path, conv_model)
    assert isinstance(adapter, CalibrationDataReader)
    feeds = list(adapter)
    assert [f["x"].shape for f in feeds] == [(1, 3, 8, 8)] * 2  # split by the batch policy
    assert adapter.get_next() is None
    adapter.rewind()
    assert adapter.get_next()["x"].shape == (1, 3, 8, 8)


def test_adapter_without_a_model_needs_named_arrays(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((1, 16), np.float32))
    with pytest.raises(DataInputError, match="pass the model to OrtReaderAdapter"):
        OrtReaderAdapter(tmp_path / "s.npy").get_next()
