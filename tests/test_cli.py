import json

from resnet_lab.__main__ import main


def test_cli_train_and_evaluate(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "resnet8", "--data", str(image_folder), "--no-download", "--epochs", "2",
               "--batch-size", "10", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert rc == 0
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist["epochs"]] == [1, 2]
    assert hist["meta"]["model"] == "resnet8"
    assert "test accuracy" in capsys.readouterr().out
    rc = main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--data", str(image_folder), "--no-download"])
    assert rc == 0
    assert "resnet8 after 2 epochs" in capsys.readouterr().out
