import pytest
import torch

from resnet_lab.blocks import BasicBlock, PreActBlock
from resnet_lab.book.identity import branch_of, gradient_ratio, ratio_curves, stack_jacobians


def test_branch_of_is_the_branch():
    torch.manual_seed(0)
    block = PreActBlock(4, 4).double().eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(branch_of(block)(x), block(x) - x)
    with pytest.raises(ValueError, match="identity shortcut"):
        branch_of(PreActBlock(4, 8, stride=2))
    with pytest.raises(ValueError, match="needs a PreActBlock"):  # same keys, other order
        branch_of(BasicBlock(4, 4))


def test_two_block_expansion_and_its_failures():
    torch.manual_seed(1)
    a, b = (PreActBlock(2, 2).double().eval() for _ in range(2))
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    J, (J_a, J_b) = stack_jacobians([a, b], x)
    eye = torch.eye(x.numel(), dtype=torch.float64)
    torch.testing.assert_close(J, eye + J_a + J_b + J_b @ J_a)
    assert not torch.allclose(J, eye + J_a + J_b)
    assert not torch.allclose(J, eye + J_a + J_b + J_a @ J_b)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_chapters_claims_hold_for_other_seeds(seed):
    depths = (5, 20, 100)
    c = ratio_curves((0.9, 1.0, 1.1), depths, seed=seed)
    assert c[1.1][0] < c[1.1][1] < c[1.1][2] and c[1.1][-1] > 1e3
    assert c[0.9][0] > c[0.9][1] > c[0.9][2] and c[0.9][-1] < 1e-3
    assert all(0.5 < v < 10 for v in c[1.0])
    assert gradient_ratio(0.9, 50, seed=seed, train_bn=True) > 5


def test_random_state_is_left_alone_and_bad_depth():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    gradient_ratio(1.0, 3, seed=0)
    assert torch.equal(before, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="depth"):
        gradient_ratio(1.0, 0)
