"""The .pth reader (standard library + NumPy) reads what torch.save writes, in both layouts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sources.common import run, torch_python

from keras_retinanet.convert import PthError, read_state_dict

WRITER = """
import sys, numpy as np, torch
torch.manual_seed(0)
state = {
    "conv.weight": torch.randn(8, 3, 7, 7),
    "transposed": torch.randn(4, 6).t(),           # non-contiguous view
    "slice": torch.arange(20, dtype=torch.int64)[3:9],  # storage offset
    "scalar": torch.tensor(2.5),
    "half": torch.randn(5).half(),
    "bfloat16": torch.randn(5).bfloat16(),
    "bn.num_batches_tracked": torch.tensor(7),
    "mask": torch.tensor([True, False, True]),
}
state["shared"] = state["conv.weight"][1]          # shares the first tensor's storage
out = sys.argv[1]
torch.save(state, out + "/zip.pth")
torch.save(state, out + "/legacy.pth", _use_new_zipfile_serialization=False)
torch.save({"model": state, "epoch": 3}, out + "/checkpoint.pth")
np.savez(out + "/expected.npz", **{k: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
                                   for k, v in state.items()})
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("pth")
    run([torch_python(), "-c", WRITER, str(out)])
    return out


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pth", "checkpoint.pth"])
def test_read_state_dict_matches_torch(written, name):
    expected = np.load(written / "expected.npz")
    state = read_state_dict(written / name)
    assert sorted(state) == sorted(expected.files)
    for key in expected.files:
        assert state[key].shape == expected[key].shape, key
        np.testing.assert_array_equal(state[key], expected[key], err_msg=key)
    assert state["conv.weight"].dtype == np.float32
    assert state["half"].dtype == np.float16
    assert state["slice"].dtype == np.int64 and state["slice"][0] == 3


def test_read_state_dict_refuses_what_is_not_a_state_dict(tmp_path):
    text = tmp_path / "readme.pth"
    text.write_text("hello")
    with pytest.raises(PthError, match="readme.pth"):
        read_state_dict(text)
    # A pickle that would run code when unpickled by pickle.load is refused, not executed.
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(print))
    with pytest.raises(PthError, match="builtins.print"):
        read_state_dict(evil)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")
