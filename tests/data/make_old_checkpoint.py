"""How tests/data/resnet8_epoch1_of_2_f3a07df.pt was written: this script, run from an export of
commit f3a07df (the trainer before it was split into run.py and train.py):
    git archive f3a07df resnet_lab tests | tar -x -C /tmp/pre; python make_old_checkpoint.py
It stops a 2-epoch run after epoch 1, so the checkpoint holds a run to resume."""

import sys

sys.path.insert(0, "/tmp/pre")
import tests.conftest as c
from resnet_lab.config import TrainConfig
from resnet_lab.models import cifar_resnet
from resnet_lab.train import seed_everything, train

CFG = TrainConfig(
    epochs=2,
    batch_size=50,
    lr=0.05,
    device="cpu",
    precision="fp32",
    channels_last=False,
    schedule="onecycle",
    warmup=1,
    label_smoothing=0.1,
    ema=0.9,
)
data = c.tiny_data._get_wrapped_function()()


def stop(h):
    raise KeyboardInterrupt


seed_everything(0)
h = train(
    cifar_resnet(8, width=4),
    data,
    CFG,
    progress=False,
    checkpoint_dir="/tmp/pre/run",
    on_epoch=stop,
)
print(len(h), h.meta.get("git_commit"))
