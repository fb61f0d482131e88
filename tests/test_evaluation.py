import pytest
import torch
from torch import nn

from resnet_lab.evaluation import eval_mode


def test_eval_mode_restores_every_modules_own_mode_even_after_an_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4))
    model.train()
    model[2].eval()  # a frozen BN keeps its running statistics: it stays in eval mode
    with eval_mode(model) as m:
        assert m is model and not any(x.training for x in model.modules())
        assert not torch.is_grad_enabled()
    assert [x.training for x in model.modules()] == [True, True, True, False]
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert [x.training for x in model.modules()] == [True, True, True, False]
    assert torch.is_grad_enabled()
