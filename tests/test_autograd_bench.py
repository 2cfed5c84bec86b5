"""The hand-written NumPy reference of the autograd benchmark computes the same gradients as the engine
(otherwise its speed ratio would compare different work), and the benchmark runs."""
import numpy as np
import pytest

from tinylm.autograd import Tensor
from tinylm.bench import autograd as bench


def test_hand_written_block_matches_the_engine():
    rng = np.random.default_rng(0)
    block = bench.Block(16, 2, rng)
    for p in block.parameters():  # non-trivial LayerNorm gains and biases
        p.data[...] += rng.normal(0, 0.1, p.shape).astype(np.float32)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    dout = rng.standard_normal((2, 5, 16)).astype(np.float32)
    xt = Tensor(x, requires_grad=True)
    out = block(xt)
    out.backward(dout)
    params = {name: p.data for name, p in block.named_parameters()}
    ref_out, cache = bench.block_forward(params, x, 2)
    ref_dx, ref_grads = bench.block_backward(params, dout, cache, 2)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xt.grad, ref_dx, rtol=1e-3, atol=1e-4)
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, ref_grads[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_hand_written_gpt_matches_the_model():
    from tinylm import model as model_mod
    cfg = model_mod.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    model = model_mod.GPT(cfg, seed=0)
    idx = np.random.default_rng(1).integers(0, 11, (3, 7))
    targets = np.random.default_rng(2).integers(0, 11, (3, 7))
    _, loss = model(idx, targets=targets)
    loss.backward()
    params = {name: p.data for name, p in model.named_parameters()}
    ref_loss, ref_grads = bench.gpt_forward_backward(params, idx, targets, cfg.n_layer, cfg.n_head)
    assert abs(loss.item() - ref_loss) < 1e-5
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, ref_grads[name], rtol=1e-3, atol=1e-6, err_msg=name)


@pytest.mark.slow  # seconds only, but multi-threaded BLAS on a busy machine can stretch it past 5 s
def test_benchmark_runs(capsys):
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "GPT fwd+bwd" in out and "cross-entropy" in out
