import dataclasses
import os
import pickle
import re
import shutil
import stat
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import resnet_lab.cifar10 as D
from resnet_lab.cifar10 import CLASSES, DataError, balanced_indices, load_cifar10
from tests.conftest import TRAIN_ARGS, make_archives


def _check(data, n_train, n_test):
    assert (
        data.train_images.shape == (n_train, 3, 32, 32) and data.train_images.dtype == torch.uint8
    )
    assert data.test_images.shape == (n_test, 3, 32, 32)
    assert data.train_labels.dtype == torch.int64
    assert data.classes == CLASSES
    # the marker pixel (red channel of pixel 0,0) encodes the label: label order is kept
    assert torch.equal(data.train_images[:, 0, 0, 0].long(), data.train_labels * 20)
    assert torch.equal(data.test_images[:, 0, 0, 0].long(), data.test_labels * 20)


def test_image_folders(image_folder):
    data = load_cifar10(image_folder, download=False)
    _check(data, 30, 20)
    assert "image folders" in data.source
    assert torch.equal(data.train_labels.bincount(), torch.full((10,), 3))


def test_archives_with_checksums(archive_folder):
    data = load_cifar10(archive_folder, download=False)
    _check(data, 30, 20)
    assert data.source == "CIFAR-10 JPEG copy"


def test_archives_without_checksums(image_folder, tmp_path):
    root = make_archives(image_folder, tmp_path / "nosums", sums=False)
    assert "no SHA256SUMS" in load_cifar10(root, download=False).source


def test_python_batches(python_batches):
    data = load_cifar10(python_batches, download=False)
    _check(data, 50, 10)
    assert "official" in data.source


def test_env_variable_names_root(archive_folder, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_DATA", str(archive_folder))
    assert load_cifar10(download=False).train_images.shape[0] == 30


def test_checksum_mismatch(archive_folder):
    sums = archive_folder / "SHA256SUMS"
    sums.write_text(sums.read_text().replace(sums.read_text()[:8], "00000000", 1))
    with pytest.raises(DataError, match="checksum mismatch for .*train.tar.gz"):
        load_cifar10(archive_folder, download=False)


def test_corrupted_archive(image_folder, tmp_path):
    root = make_archives(image_folder, tmp_path / "bad", sums=False)
    blob = (root / "train.tar.gz").read_bytes()
    (root / "train.tar.gz").write_bytes(blob[: len(blob) // 2])  # truncated download
    with pytest.raises(DataError, match="corrupted or truncated.*copy it again"):
        load_cifar10(root, download=False)


def test_missing_class_folder(image_folder):
    import shutil

    shutil.rmtree(image_folder / "train" / "cat")
    with pytest.raises(DataError, match="train needs a folder of images per class.* cat"):
        load_cifar10(image_folder, download=False)


def test_archive_missing_class(image_folder, tmp_path):
    import shutil

    shutil.rmtree(image_folder / "test" / "ship")
    root = make_archives(image_folder, tmp_path / "noship", sums=False)
    with pytest.raises(DataError, match=r"test.tar.gz lacks the class folders \['ship'\]"):
        load_cifar10(root, download=False)


def test_nothing_found_lists_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "empty", download=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("CIFAR-10 not found in ")
    assert all(w in msg for w in ("image folders", "archives", "python batches", "RESNET_LAB_DATA"))


def test_cache_is_used_and_read_only_root_uses_user_cache(archive_folder, tmp_path):
    mode = archive_folder.stat().st_mode
    os.chmod(archive_folder, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        first = load_cifar10(archive_folder, download=False)
        cached = list((tmp_path / "cache" / "resnet_lab").glob("cifar10-*.pt"))
        assert len(cached) == 1
        assert not (archive_folder / ".resnet_lab_cache").exists()
        # a second load reads the cache: deleting the archives' contents would not matter
        second = load_cifar10(archive_folder, download=False)
        assert torch.equal(first.train_images, second.train_images)
    finally:
        os.chmod(archive_folder, mode)


def test_writable_root_caches_beside_data(image_folder):
    load_cifar10(image_folder, download=False)
    assert list((image_folder / ".resnet_lab_cache").glob("cifar10-*.pt"))


def test_balanced_subset_and_validation_split(image_folder):
    data = load_cifar10(image_folder, download=False)
    sub = data.subset(train=20, test=10, seed=3)
    assert torch.equal(sub.train_labels.bincount(), torch.full((10,), 2))
    assert torch.equal(sub.test_labels.bincount(), torch.ones(10, dtype=torch.long))
    again = data.subset(train=20, test=10, seed=3)
    assert torch.equal(sub.train_images, again.train_images)
    split = data.split_validation(10, seed=0)
    assert len(split.train_labels) == 20 and len(split.val_labels) == 10
    assert torch.equal(split.val_labels.bincount(), torch.ones(10, dtype=torch.long))
    # no image is in both
    tr = {bytes(x.numpy()) for x in split.train_images}
    assert not any(bytes(x.numpy()) in tr for x in split.val_images)
    with pytest.raises(ValueError, match="subset size"):
        balanced_indices(data.train_labels, 5)


# ------------------------------------------------------------------- archives, digests, cache


def _tar(dest, members: dict) -> None:
    """Write a .tar.gz holding ``members``: {name in the archive: folder on disk}."""
    with tarfile.open(dest, "w:gz") as tar:
        for arcname, folder in members.items():
            tar.add(folder, arcname=arcname)


@pytest.mark.parametrize("layout", ["both splits", "swapped"])
def test_archive_must_hold_the_split_its_name_says(image_folder, tmp_path, layout):
    root = tmp_path / "arch"
    root.mkdir()
    train, test = image_folder / "train", image_folder / "test"
    if layout == "both splits":  # tar czf train.tar.gz cifar10/, cifar10 holding train/ and test/
        _tar(root / "train.tar.gz", {"cifar10/train": train, "cifar10/test": test})
        _tar(root / "test.tar.gz", {"test": test})
        found, archive = "cifar10/test/, cifar10/train/", "train.tar.gz"
    else:
        _tar(root / "train.tar.gz", {"test": test})
        _tar(root / "test.tar.gz", {"train": train})
        found, archive = "test/", "train.tar.gz"
    with pytest.raises(DataError) as e:
        load_cifar10(root, download=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{archive} must hold {archive.split('.')[0]}/<class>/" in msg
    assert f"found {found}." in msg and "tar czf" in msg


def test_archive_split_may_sit_in_one_wrapping_folder(image_folder, tmp_path):
    root = tmp_path / "arch"
    root.mkdir()
    for split in ("train", "test"):
        _tar(root / f"{split}.tar.gz", {f"cifar10/{split}": image_folder / split})
    _check(load_cifar10(root, download=False), 30, 20)


def test_image_folders_train_and_test_must_differ(image_folder):
    shutil.rmtree(image_folder / "test")
    (image_folder / "test").symlink_to(image_folder / "train", target_is_directory=True)
    with pytest.raises(DataError, match="train and test are the same folder"):
        load_cifar10(image_folder, download=False)


def _copy_with_other_pixels(image_folder, dest):
    """A copy of ``image_folder`` at ``dest``, with one test image's pixels changed."""
    shutil.copytree(image_folder, dest)
    path = dest / "test" / "cat" / "0000.png"
    arr = np.asarray(Image.open(path)).copy()
    arr[5:9, 5:9] = 255 - arr[5:9, 5:9]
    Image.fromarray(arr).save(path)
    return dest


def test_describe_names_the_content_of_both_splits(image_folder, tmp_path):
    other = _copy_with_other_pixels(image_folder, tmp_path / "elsewhere" / image_folder.name)
    a, b = load_cifar10(image_folder, download=False), load_cifar10(other, download=False)
    assert a.describe() != b.describe()
    assert re.search(r"digest [0-9a-f]{12}\)$", a.describe())
    # archives: only the test archive differs
    arch_a = make_archives(image_folder, tmp_path / "arch_a", sums=False)
    arch_b = make_archives(other, tmp_path / "arch_b", sums=False)
    shutil.copy(arch_a / "train.tar.gz", arch_b / "train.tar.gz")
    assert (
        load_cifar10(arch_a, download=False).describe()
        != load_cifar10(arch_b, download=False).describe()
    )


def test_a_flipped_byte_in_the_cache_is_caught_and_the_cache_rebuilt(image_folder, capsys):
    first = load_cifar10(image_folder, download=False)
    (path,) = (image_folder / ".resnet_lab_cache").glob("cifar10-*.pt")
    blob = torch.load(path, weights_only=True)
    blob["train_images"][3, 1, 2, 3] ^= 0xFF  # one byte of one image; the digest kept
    torch.save(blob, path)
    second = load_cifar10(image_folder, download=False)
    assert torch.equal(second.train_images, first.train_images)  # read from the images again
    assert second.describe() == first.describe()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilding the damaged CIFAR-10 cache" in err[0], err
    assert torch.equal(torch.load(path, weights_only=True)["train_images"], first.train_images)


def test_derived_data_gets_the_digest_of_what_it_holds(image_folder):
    data = load_cifar10(image_folder, download=False)
    derived = [
        data.subset(20, 10, seed=3),
        data.select_classes(["cat", "dog"]),
        data.split_validation(10),
        data.split_validation(10).subset(10),
    ]
    for d in derived:
        fresh = D.CifarData(
            d.train_images,
            d.train_labels,
            d.test_images,
            d.test_labels,
            d.classes,
            val_images=d.val_images,
            val_labels=d.val_labels,
        )
        assert d.content_digest() == fresh.content_digest() != data.content_digest()
    # a copy made by dataclasses.replace() with other images does not keep the old digest
    flipped = dataclasses.replace(data, train_images=data.train_images.flip(3))
    assert flipped.content_digest() != data.content_digest()


def test_resume_refuses_other_images_in_a_folder_of_the_same_name(image_folder, tmp_path, capsys):
    from resnet_lab.lab.cli import main

    other = _copy_with_other_pixels(image_folder, tmp_path / "elsewhere" / image_folder.name)
    args = ["train", *TRAIN_ARGS, "--out", str(tmp_path / "run")]
    assert main([*args, "--data", str(image_folder), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--data", str(other), "--epochs", "2", "--resume"]) == 2
    assert "other data" in capsys.readouterr().err


def _same_size_png(path, seed):
    """Rewrite ``path`` as an uncompressed PNG of new random pixels: its size depends only on
    the image's shape, so every call gives a file of the same size."""
    arr = np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, compress_level=0)
    return arr


def test_cache_follows_an_image_replaced_with_its_size_and_mtime_kept(image_folder):
    path = image_folder / "train" / "dog" / "0001.png"
    _same_size_png(path, 1)
    st = path.stat()
    load_cifar10(image_folder, download=False)
    new = _same_size_png(path, 2)  # as cp -p, tar x or rsync -t leave it: same size, same mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    data = load_cifar10(image_folder, download=False)
    i = CLASSES.index("dog") * 3 + 1  # sorted by class, then by name
    assert torch.equal(data.train_images[i], torch.from_numpy(new).permute(2, 0, 1))


def test_cache_follows_a_python_batch_replaced_with_its_size_and_mtime_kept(python_batches):
    path = python_batches / "cifar-10-batches-py" / "test_batch"
    first = load_cifar10(python_batches, download=False)
    st = path.stat()
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["data"] = 255 - entry["data"]
    with open(path, "wb") as f:
        pickle.dump(entry, f)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    second = load_cifar10(python_batches, download=False)
    assert torch.equal(second.test_images, 255 - first.test_images)


class _Payload:
    """Unpickling this writes a marker file: what a crafted data_batch_1 could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_python_batch_cannot_run_code(python_batches, tmp_path):
    marker = tmp_path / "marker"
    with open(python_batches / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": list(range(10))}, f)
    with pytest.raises(DataError) as e:
        load_cifar10(python_batches, download=False)
    assert not marker.exists()
    msg = str(e.value)
    assert (
        "data_batch_1 is not a CIFAR-10 python batch" in msg
        and "builtins.exec" in msg
        and "\n" not in msg
    )


def test_python_batch_payload_through_the_cli(python_batches, tmp_path, capsys):
    from resnet_lab.lab.cli import main

    marker = tmp_path / "marker"
    with open(python_batches / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": list(range(10))}, f)
    rc = main(
        [
            "train",
            "--model",
            "resnet8",
            "--data",
            str(python_batches),
            "--no-download",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not marker.exists()
    assert len(err) == 1 and "refused" in err[0], err


def _py2_pickle(obj) -> bytes:
    """``obj`` pickled as Python 2's cPickle wrote the official batches (protocol 2; str as
    BINSTRING, numpy arrays through numpy.core.multiarray._reconstruct)."""

    def s(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + len(b).to_bytes(4, "little")) + b

    def i(n: int) -> bytes:
        return b"K" + bytes([n]) if 0 <= n < 256 else b"J" + n.to_bytes(4, "little", signed=True)

    def enc(o) -> bytes:
        if isinstance(o, dict):
            return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
        if isinstance(o, list):
            return b"](" + b"".join(enc(v) for v in o) + b"e"
        if isinstance(o, bytes):
            return s(o)
        if isinstance(o, int):
            return i(o)
        assert isinstance(o, np.ndarray) and o.dtype == np.uint8 and o.ndim == 2
        dtype = b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R(" + i(3) + s(b"|") + b"NNN"
        dtype += i(-1) + i(-1) + i(0) + b"tb"
        shape = i(o.shape[0]) + (b"M" + o.shape[1].to_bytes(2, "little")) + b"\x86"
        new = (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + i(0)
            + b"\x85"
            + s(b"b")
            + b"\x87R"
        )
        return new + b"(" + i(1) + shape + dtype + b"\x89" + s(o.tobytes()) + b"tb"

    return b"\x80\x02" + enc(obj) + b"."


def test_python_batches_in_the_official_format_still_load(tmp_path):
    rng = np.random.default_rng(2)
    d = tmp_path / "official" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(10, 3072), dtype=np.uint8)
        labels = [int(y) for y in rng.integers(0, 10, size=10)]
        entry = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{k}.png".encode() for k in range(10)],
        }
        (d / name).write_bytes(_py2_pickle(entry))
        expected.append((data, labels))
    with open(d / "data_batch_1", "rb") as f:  # the file is what torchvision reads
        assert sorted(pickle.load(f, encoding="latin1")) == [
            "batch_label",
            "data",
            "filenames",
            "labels",
        ]
    got = load_cifar10(d.parent, download=False)
    want = np.concatenate([x for x, _ in expected[:5]]).reshape(-1, 3, 32, 32)
    assert torch.equal(got.train_images, torch.from_numpy(want))
    assert got.test_labels.tolist() == expected[5][1]


@pytest.mark.parametrize("failure", ["OSError ENOSPC", "torch.save into /dev/full"])
def test_failed_cache_write_is_one_line_and_the_data_still_loads(
    image_folder, monkeypatch, capsys, failure
):
    if failure == "OSError ENOSPC":

        def write(obj, path):
            raise OSError(28, "No space left on device")
    else:
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full here")

        def write(obj, path):  # a real full disk: torch's zip writer raises RuntimeError
            torch.save(obj, "/dev/full")

    monkeypatch.setattr(D, "atomic_save", write)
    data = load_cifar10(image_folder, download=False)
    _check(data, 30, 20)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not write the CIFAR-10 cache" in err[0], err
    assert not list((image_folder / ".resnet_lab_cache").glob("*"))


# ---------------------------------------------------------------- from the reliability issues


def test_cache_follows_a_replaced_test_archive(image_folder, tmp_path):
    root = make_archives(image_folder, tmp_path / "arch", sums=False)
    first = load_cifar10(root, download=False)
    # replace the test archive: one image fewer in one class
    (image_folder / "test" / "cat" / "0000.png").unlink()
    make_archives(image_folder, tmp_path / "new", sums=False)
    shutil.copy(tmp_path / "new" / "test.tar.gz", root / "test.tar.gz")
    second = load_cifar10(root, download=False)
    assert len(first.test_labels) == 20 and len(second.test_labels) == 19


def test_cache_follows_a_changed_image_folder(image_folder):
    first = load_cifar10(image_folder, download=False)
    (image_folder / "test" / "dog" / "0001.png").unlink()
    assert len(load_cifar10(image_folder, download=False).test_labels) == len(first.test_labels) - 1


@pytest.mark.parametrize("where", [0.5, 0.9])
def test_flipped_byte_without_checksums_is_reported_as_corruption(image_folder, tmp_path, where):
    root = make_archives(image_folder, tmp_path / "arch", sums=False)
    blob = bytearray((root / "train.tar.gz").read_bytes())
    blob[int(len(blob) * where)] ^= 0xFF
    (root / "train.tar.gz").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="train.tar.gz is corrupted"):
        load_cifar10(root, download=False)


def test_a_mistyped_data_folder_is_named_and_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_download", lambda *a: pytest.fail("a download started"))
    target = tmp_path / "typo" / "cifar"
    with pytest.raises(
        DataError, match=f"^CIFAR-10 not found: {target} does not exist; name the folder"
    ) as e:
        load_cifar10(target, download=True)
    assert "\n" not in str(e.value) and not (tmp_path / "typo").exists()


def test_data_env_pointing_at_a_file(tmp_path, monkeypatch):
    (tmp_path / "cifar.tar").write_text("x")
    monkeypatch.setenv("RESNET_LAB_DATA", str(tmp_path / "cifar.tar"))
    with pytest.raises(DataError, match="RESNET_LAB_DATA=.*cifar.tar is a file; name the folder"):
        load_cifar10(download=False)


def test_python_batch_of_the_wrong_size_names_the_file(python_batches):
    path = python_batches / "cifar-10-batches-py" / "data_batch_3"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((10, 100), dtype=np.uint8), "labels": list(range(10))}, f)
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_cifar10(python_batches, download=False)


# ------------------------------------------------------------- image_folder(), inputs, pages


def test_image_folder_is_the_root_when_it_holds_class_folders(image_folder, tmp_path):
    assert D.image_folder(image_folder) == image_folder
    (tmp_path / "empty").mkdir()
    assert D.image_folder(tmp_path / "empty") is None  # no offline copy: download instead


def _flip_a_byte(path):
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_image_folder_unpacks_the_archives_once_for_imagefolder(archive_folder, monkeypatch):
    from torchvision.datasets import ImageFolder

    folder = D.image_folder(archive_folder)
    assert folder.parent == archive_folder / ".resnet_lab_cache"
    assert folder.name.startswith("cifar10-images-") and not list(folder.parent.glob(".unp*"))
    data = load_cifar10(archive_folder, download=False)
    for split, n in (("train", 30), ("test", 20)):
        ds = ImageFolder(folder / split)
        assert ds.classes == list(CLASSES) and len(ds) == n
        images = torch.stack([torch.from_numpy(np.array(x)).permute(2, 0, 1) for x, _ in ds])
        assert torch.equal(images, getattr(data, f"{split}_images"))  # one decoder: PIL
        assert ds.targets == getattr(data, f"{split}_labels").tolist()
    monkeypatch.setattr(D, "_read_archive", lambda *a: pytest.fail("unpacked twice"))
    assert D.image_folder(archive_folder) == folder


def test_a_flipped_byte_in_the_unpacked_images_is_caught(archive_folder, capsys):
    folder = D.image_folder(archive_folder)
    image = folder / "test" / "cat" / "0001.png"
    good = image.read_bytes()
    _flip_a_byte(image)
    assert D.image_folder(archive_folder) == folder and image.read_bytes() == good
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unpacking the damaged" in err[0], err


@pytest.mark.parametrize("damage", ["swapped archives", "a wrong checksum"])
def test_image_folder_refuses_bad_archives_and_leaves_nothing(image_folder, tmp_path, damage):
    root = make_archives(image_folder, tmp_path / "arch")
    if damage == "swapped archives":
        (root / "SHA256SUMS").unlink()
        (root / "train.tar.gz").rename(tmp_path / "t")
        (root / "test.tar.gz").rename(root / "train.tar.gz")
        (tmp_path / "t").rename(root / "test.tar.gz")
    else:
        _flip_a_byte(root / "test.tar.gz")
    with pytest.raises(DataError, match="must hold train/<class>/|checksum mismatch") as e:
        D.image_folder(root)
    assert "\n" not in str(e.value)
    assert not list((root / ".resnet_lab_cache").glob("*"))


def test_image_folder_of_a_read_only_copy_goes_to_the_user_cache(archive_folder, tmp_path):
    mode = archive_folder.stat().st_mode
    os.chmod(archive_folder, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        folder = D.image_folder(archive_folder)
    finally:
        os.chmod(archive_folder, mode)
    assert folder.parent == tmp_path / "cache" / "resnet_lab"
    assert sorted(p.name for p in (folder / "train").iterdir()) == sorted(CLASSES)


@pytest.mark.parametrize("value", ["   ", "\t"])
def test_a_blank_data_variable_is_named(monkeypatch, value):
    monkeypatch.setenv("RESNET_LAB_DATA", value)
    for call in (load_cifar10, D.image_folder):
        with pytest.raises(DataError, match="^RESNET_LAB_DATA is blank .*: unset it"):
            call()


def test_a_mistyped_data_folder_is_refused_by_image_folder_too(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_DATA", str(tmp_path / "cifar-typo"))
    with pytest.raises(DataError, match="^CIFAR-10 not found: RESNET_LAB_DATA=.*cifar-typo does"):
        D.image_folder()


def test_repr_and_describe_fit_a_page_and_name_no_local_path(archive_folder, tmp_path):
    data = load_cifar10(archive_folder, download=False)
    long = data.select_classes(["airplane", "automobile", "ship", "truck"]).subset(8, 4)
    for d in (data, long, long.split_validation(4)):
        for text in (repr(d), d.describe()):
            assert all(len(line) <= 77 for line in text.splitlines()), text
            assert str(tmp_path) not in text and d.content_digest()[:12] in text
            assert d.content_digest()[:13] not in text  # twelve digits, not more
    assert len(data.describe().splitlines()) == 1  # the whole set fits one line


def test_same_data_reads_descriptions_by_their_digest(archive_folder):
    data = load_cifar10(archive_folder, download=False)
    ours = data.subset(10, 10).describe()
    assert "\n" in ours
    old = f"CIFAR-10 JPEG archives, train.tar.gz sha256 45a63b9dd754... {ours[18:]}"
    assert D.same_data(" ".join(old.split()), ours)  # an old source, one line: same digest
    assert not D.same_data(data.subset(10, 10, seed=1).describe(), ours)
    before_digests = " ".join(ours.split()).rsplit("; digest ", 1)[0] + ")"
    assert D.same_data(before_digests, ours)


def test_a_damaged_cache_in_the_user_cache_is_named_from_its_variable(
    archive_folder, tmp_path, capsys
):
    mode = archive_folder.stat().st_mode
    os.chmod(archive_folder, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        load_cifar10(archive_folder, download=False)
        (path,) = (tmp_path / "cache" / "resnet_lab").glob("cifar10-*.pt")
        path.write_bytes(path.read_bytes()[:1000])  # truncated
        load_cifar10(archive_folder, download=False)
    finally:
        os.chmod(archive_folder, mode)
    err = capsys.readouterr().err
    assert "cache $XDG_CACHE_HOME/resnet_lab/cifar10-v3-" in err and str(tmp_path) not in err
