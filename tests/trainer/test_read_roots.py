"""The one rule for the paths a job reads (trainer.files): inside the folders in force, on the
real path, checked as each file is opened."""

import os

import numpy as np
import pytest

from trainer.config import DataConfig
from trainer.data import load_dataset
from trainer.files import DataError, allowed, outside, read_cifar10, read_roots, real_roots


@pytest.fixture
def roots(tmp_path):
    inside = tmp_path / "datasets"
    inside.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0")
    return inside, secret


def test_dot_dot_and_links_lead_out_of_a_root(roots):
    inside, secret = roots
    os.symlink(secret, inside / "link")
    top = real_roots([str(inside)])
    assert not outside(str(inside / "x.npz"), top)
    assert outside(str(inside / ".." / "secret" / "passwd"), top)
    assert outside(str(inside / "link" / "passwd"), top)
    assert outside(str(inside) + "-sibling/x", top)  # a common prefix is not a parent


def test_a_link_made_after_the_check_is_refused_when_the_file_is_opened(roots):
    inside, secret = roots
    path = str(inside / "late.npz")
    assert not outside(path, real_roots([str(inside)]))  # what the server checked at queue time
    os.symlink(secret / "passwd", inside / "late.npz")
    with read_roots(real_roots([str(inside)])), pytest.raises(DataError) as error:
        load_dataset(DataConfig(name="npz", path=path), 0)
    message = str(error.value)
    assert message.startswith("data.path: must be inside one of the data directories")
    assert "root:x" not in message and "does not exist" not in message


def test_a_file_inside_an_allowed_folder_that_links_out_is_refused(roots):
    inside, secret = roots
    (inside / "cifar").mkdir()
    os.symlink(secret / "passwd", inside / "cifar" / "data_batch_1")
    with read_roots(real_roots([str(inside)])), pytest.raises(DataError) as error:
        read_cifar10(str(inside / "cifar"), "params.path")
    assert "must be inside one of the data directories" in str(error.value) and "root:x" not in str(error.value)


def test_without_roots_in_force_any_path_reads_and_the_rule_ends_with_its_block(roots):
    inside, secret = roots
    np.savez(secret / "x.npz", X=np.zeros((4, 2), np.float32), y=np.array([0, 1, 0, 1]))
    assert load_dataset(DataConfig(name="npz", path=str(secret / "x.npz")), 0).x_train.shape[1] == 2
    with read_roots(real_roots([str(inside)])), pytest.raises(DataError):
        allowed(secret / "x.npz", "data.path")
    assert allowed(secret / "x.npz", "data.path") == (secret / "x.npz").resolve()
