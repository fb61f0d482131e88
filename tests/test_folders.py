"""resnet_lab.book.folders.image_folder: chapter 6's offline copy as torchvision's ImageFolder
reads it (a folder of class folders), from class folders or from the copy's checked archives."""

import pytest
from torchvision.datasets import ImageFolder

from resnet_lab.book.folders import image_folder
from resnet_lab.cifar10_files import CLASSES, DataError


def test_class_folders_are_used_as_they_are(image_folder_root):
    assert image_folder(image_folder_root) == image_folder_root


def test_archives_are_unpacked_once_with_labels_in_cifar_order(archive_folder):
    found = image_folder(archive_folder)
    assert found != archive_folder and found.parent.is_dir()
    train = ImageFolder(found / "train")
    assert train.classes == list(CLASSES)  # sorted folders: CIFAR-10's label order
    assert len(train) == 3 * len(CLASSES) and len(ImageFolder(found / "test")) == 20
    stamp = (found / "train" / CLASSES[0]).stat().st_mtime_ns
    assert image_folder(archive_folder) == found  # the second call unpacks nothing
    assert (found / "train" / CLASSES[0]).stat().st_mtime_ns == stamp
    assert not list(found.parent.glob(".unpacking-*"))  # nothing half-written left


def test_no_copy_means_download(tmp_path):
    assert image_folder(tmp_path) is None


def test_an_archive_missing_a_class_is_named(image_folder_root, tmp_path):
    import shutil

    from tests.conftest import make_archives

    shutil.rmtree(image_folder_root / "test" / CLASSES[-1])
    with pytest.raises(DataError, match=f"no test/<class>/ images of {CLASSES[-1]}"):
        image_folder(make_archives(image_folder_root, tmp_path / "broken"))


@pytest.fixture
def image_folder_root(image_folder):
    return image_folder
