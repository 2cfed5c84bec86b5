"""Mixed-precision training (tinylm.amp, `tinylm train --precision`) and quantization-aware fine-tuning
from the command line (`tinylm train --resume --qat PLAN`)."""
import json

import numpy as np
import pytest

from tinylm import amp, cli, nn
from tinylm.autograd import Tensor
from tinylm.data import train_val_split
from tinylm.io.runs import load_checkpoint
from tinylm.model import GPT, GPTConfig
from tinylm.tokenizer import Tokenizer
from tinylm.train import TrainConfig, train

TINY = GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=2, n_embd=32)
SMALL = GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="module")
def ids():
    text = "To be, or not to be, that is the question. " * 30
    return train_val_split(np.frombuffer(text.encode(), dtype=np.uint8).astype(np.uint16))


def _config(**kw):
    base = dict(batch_size=4, max_iters=8, warmup_iters=2, eval_interval=4, eval_iters=2, seed=7)
    return TrainConfig(**{**base, **kw})


def _batch(config, seed=0, B=4):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 64, (B, config.block_size))
    return x, np.roll(x, -1, axis=1)


# -----------------------------------------------------------------------------------------------------
# the formats


def test_the_examples_in_amp_docstrings_hold():
    import doctest

    assert doctest.testmod(amp).failed == 0


def test_round_bf16_keeps_8_bits_of_mantissa_rounding_ties_to_even():
    one_ulp = 2.0 ** -7  # bf16's spacing just above 1.0
    a = np.array([1.0 + one_ulp / 2, 1.0 + 3 * one_ulp / 2, 1.0 + one_ulp / 2 + 2.0 ** -20, -1.0 - one_ulp / 4,
                  np.inf, -np.inf, 3.4e38], np.float32)
    r = amp.round_bf16(a)
    assert r.tolist() == [1.0, 1.0 + 2 * one_ulp, 1.0 + one_ulp, -1.0, np.inf, -np.inf, np.inf]
    assert np.isnan(amp.round_bf16(np.array([np.nan], np.float32)))[0]
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    rx = amp.round_bf16(x)
    assert not (rx.view(np.uint32) & 0xFFFF).any()  # only the top 16 bits survive
    assert np.all(np.abs(rx - x) <= np.abs(x) * 2.0 ** -8)  # within half a bf16 ulp


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_linear_matches_fp32_within_half_precision_and_rounds_its_gradients(precision):
    fmt = amp.HalfFormat(precision)
    rng = np.random.default_rng(1)
    lin = nn.Linear(64, 48, rng=rng)
    x = rng.standard_normal((5, 7, 64)).astype(np.float32)
    g = rng.standard_normal((5, 7, 48)).astype(np.float32)
    ref_x = Tensor(x, requires_grad=True)
    lin(ref_x).backward(g)
    ref_w = lin.weight.grad.copy()
    lin.weight.grad = lin.bias.grad = None

    hx = Tensor(x, requires_grad=True)
    y = amp.HalfLinear(lin, fmt)(hx)
    assert y.dtype == fmt.dtype and y.shape == (5, 7, 48)
    y.backward(fmt.round(g))
    tol = 2.0 ** -10 if precision == "fp16" else 2.0 ** -7
    assert np.abs(y.data.astype(np.float32) - (x @ lin.weight.data.T + lin.bias.data)).max() < 8 * tol * 8
    assert lin.weight.grad.dtype == np.float32  # added into the fp32 master gradient
    assert np.abs(lin.weight.grad - ref_w).max() < 16 * tol * np.abs(ref_w).max()
    assert np.array_equal(lin.weight.grad, fmt.round(lin.weight.grad).astype(np.float32))  # stored in half


def test_a_tiny_fp16_gradient_underflows_to_zero_unless_the_loss_is_scaled():
    fmt = amp.HalfFormat("fp16")
    lin = amp.HalfLinear(nn.Linear(16, 8, rng=np.random.default_rng(0)), fmt)
    x = (np.random.default_rng(1).standard_normal((4, 16)) * 1e-3).astype(np.float32)
    grads = {}
    for scale in (1.0, 2.0 ** 16):
        lin.weight.grad = None
        g = fmt.round(np.full((4, 8), 2e-6 * scale, np.float32))  # d loss / dy, stored in fp16
        lin(Tensor(x)).backward(g)
        grads[scale] = lin.weight.grad / scale
        expected = g.astype(np.float32).T @ fmt.round(x).astype(np.float32) / scale  # (8, 16), ~1e-8
    assert np.abs(expected).min() > 0 and np.abs(expected).max() < 2.0 ** -25  # below fp16's rounding-to-0
    assert not grads[1.0].any()  # every weight gradient lost
    assert np.allclose(grads[2.0 ** 16], expected, rtol=2e-3, atol=0)  # kept, to fp16's precision


# -----------------------------------------------------------------------------------------------------
# a model in mixed precision


def test_autocast_stores_activations_in_fp16_and_restores_the_plain_model():
    model = GPT(SMALL, seed=0)
    params = model.parameters()
    names = [n for n, _ in model.named_parameters()]
    x, y = _batch(SMALL, B=16)  # enough rows that activations, not the half copies of the weights, dominate
    _, loss32 = model(x, y)
    fp32_bytes = amp.saved_activation_bytes(loss32, params)
    loss32.backward()
    ref = [p.grad.copy() for p in params]
    model.zero_grad()
    with amp.autocast(model, "fp16"):
        assert type(model.lm_head) is amp.HalfLinear and type(model.transformer.ln_f) is amp.FloatNorm
        assert [n for n, _ in model.named_parameters()] == names and model.parameters() == params
        h = model.transformer.h[0](model.transformer.wte(x), np.arange(16)[None])
        assert h.dtype == np.float16  # the residual stream
        logits, loss = model(x, y)
        assert logits.dtype == np.float32  # the output head writes fp32 logits for the loss
        # fp32 saves 1.94 MB here with the C kernels (2.38 MB on the NumPy path), fp16 1.33 MB; the fp32 logits
        # and the loss's probabilities are most of what is left
        assert amp.saved_activation_bytes(loss, params) < 0.75 * fp32_bytes
        (loss * 1024.0).backward()
    assert all(type(m) in (GPT, nn.Linear, nn.Embedding, nn.LayerNorm, nn.Dropout, nn.ModuleList)
               or type(m).__module__ == "tinylm.model.gpt" for m in model.modules())
    assert loss.item() == pytest.approx(loss32.item(), rel=2e-3)
    for name, p, r in zip(names, params, ref):
        g = p.grad / 1024.0
        cos = float((g * r).sum() / (np.linalg.norm(g) * np.linalg.norm(r)))
        assert cos > 0.999, name


def test_fp16_training_tracks_fp32_and_resumes_exactly(tmp_path, ids):
    tc32, tc16 = _config(), _config(precision="fp16")
    fp32 = train(GPT(TINY, seed=1), ids[0], ids[1], tc32, verbose=False)
    whole = GPT(TINY, seed=1)
    straight = train(whole, ids[0], ids[1], tc16, verbose=False)
    assert straight.loss_scaler.scale == amp.INIT_SCALE and straight.loss_scaler.skipped == 0
    assert np.allclose(straight.history["loss"], fp32.history["loss"], rtol=5e-3)
    assert straight.history["loss"] != fp32.history["loss"]  # it did compute in fp16
    assert type(whole.lm_head) is nn.Linear  # plain again after training

    tok = Tokenizer()
    train(GPT(TINY, seed=1), ids[0], ids[1], tc16, tokenizer=tok, run_dir=tmp_path, stop_at=3, verbose=False)
    ck = load_checkpoint(tmp_path)
    assert ck.state["loss_scale"] == {"scale": amp.INIT_SCALE, "clean_steps": 3, "skipped": 0}
    resumed = train(ck.model, ids[0], ids[1], tc16, tokenizer=tok, run_dir=tmp_path, resume=ck, verbose=False)
    assert resumed.history["loss"] == straight.history["loss"]  # bit for bit
    for name, value in whole.state_dict().items():
        assert np.array_equal(ck.model.state_dict()[name], value), name


def test_an_overflowing_step_is_skipped_and_the_scale_halves(ids):
    model = GPT(TINY, seed=3)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    result = train(model, ids[0], ids[1], _config(precision="fp16", loss_scale=1e30, max_iters=3), verbose=False)
    assert result.loss_scaler.skipped == 3  # 1e30 * any gradient is inf in fp16: no update at all
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    s = amp.LossScaler(init_scale=8.0, growth_interval=2)
    p = Tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = np.array([8.0, np.inf, 0.0], np.float32)
    assert not s.unscale([p])
    s.update(False)
    assert s.scale == 4.0 and s.skipped == 1
    s.update(True), s.update(True)
    assert s.scale == 8.0 and s.clean_steps == 0


def test_bf16_training_runs_and_mixed_precision_refuses_what_it_does_not_cover(ids):
    result = train(GPT(TINY, seed=1), ids[0], ids[1], _config(precision="bf16", max_iters=4), verbose=False)
    assert result.loss_scaler.scale == 1.0 and result.history["loss"][-1] < result.history["loss"][0]
    for kw, match in [({"precision": "fp8"}, "precision"), ({"precision": "fp16", "loss_scale": 0}, "loss_scale"),
                      ({"precision": "fp16", "loss_scale": "auto"}, "loss_scale"),
                      ({"precision": "fp16", "qat": {"lm_head": "int8"}}, "qat")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**kw)
    moe = GPTConfig(**{**TINY.to_dict(), "n_expert": 2})
    with pytest.raises(ValueError, match="mixture of experts"):
        train(GPT(moe), ids[0], ids[1], _config(precision="fp16"), verbose=False)


def test_fp16_gradients_of_a_model_underflow_without_scaling():
    model = GPT(SMALL, seed=0)
    x, y = _batch(SMALL)
    flushed = {}
    for scale in (1.0, 2.0 ** 16):
        fmt = amp.HalfFormat("fp16")
        fmt.counting = True
        with amp.autocast(model, fmt):
            _, loss = model(x, y)
            (loss * (scale / 64)).backward()  # one of 64 accumulated micro-batches
        flushed[scale] = fmt.flushed / fmt.nonzero
        model.zero_grad()
    assert flushed[1.0] > 0.002 and flushed[2.0 ** 16] < flushed[1.0] / 100  # ~0.9% vs ~0


# -----------------------------------------------------------------------------------------------------
# quantization-aware fine-tuning


def test_qat_training_resumes_exactly_and_leaves_a_plain_model(tmp_path, ids):
    model = GPT(TINY, seed=4)
    plan = {"lm_head": "int4:g32", "transformer.h.0.mlp.c_fc": "int8:g32"}
    tc = _config(qat=plan)
    straight = train(model, ids[0], ids[1], tc, verbose=False)
    plain = train(GPT(TINY, seed=4), ids[0], ids[1], _config(), verbose=False)
    assert straight.history["loss"] != plain.history["loss"]  # the forward pass saw quantized weights
    assert type(model.lm_head) is nn.Linear
    train(GPT(TINY, seed=4), ids[0], ids[1], tc, tokenizer=Tokenizer(), run_dir=tmp_path, stop_at=5, verbose=False)
    ck = load_checkpoint(tmp_path)
    assert ck.train_config["qat"] == plan
    resumed = train(ck.model, ids[0], ids[1], TrainConfig.from_dict(ck.train_config), tokenizer=ck.tokenizer,
                    run_dir=tmp_path, resume=ck, verbose=False)
    assert resumed.history["loss"] == straight.history["loss"]
    with pytest.raises(ValueError, match="unknown layer"):
        train(GPT(TINY), ids[0], ids[1], _config(qat={"transformer.h.9.attn.c_attn": "int8"}), verbose=False)


def _cli_run(tmp_path, corpus, *extra):
    run = str(tmp_path / "run")
    args = ["train", "--data", corpus, "--out", run, "--vocab-size", "256", "--n-layer", "1", "--n-head", "2",
            "--n-embd", "32", "--block-size", "16", "--batch-size", "4", "--max-iters", "4", "--eval-interval", "2",
            "--eval-iters", "1", "--quiet", *extra]
    assert cli.main(args) == 0
    return run


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    return str(path)


def test_cli_qat_fine_tunes_a_run_and_saves_a_quantized_model_that_loads_and_exports(tmp_path, corpus, capsys):
    import tinylm
    from tinylm.quant.layers import QuantizedLinear

    run = _cli_run(tmp_path, corpus, "--precision", "fp16")
    assert json.load(open(f"{run}/config.json"))["train"]["precision"] == "fp16"
    assert cli.main(["train", "--out", run, "--resume", "--qat", "int8", "--max-iters", "6", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "quantization-aware fine-tuning runs in fp32" in out.err and f"{run}/qat" in out.out
    config = json.load(open(f"{run}/config.json"))["train"]
    assert config["precision"] == "fp32" and config["qat"]["lm_head"].startswith("int8")
    model, tokenizer = tinylm.load(f"{run}/qat")
    assert isinstance(model.lm_head, QuantizedLinear) and tokenizer is not None
    fp32, _ = tinylm.load(run)  # the run folder: the fp32 master weights
    assert type(fp32.lm_head) is nn.Linear
    assert cli.main(["export", "--format", "c", "--run", f"{run}/qat", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c").is_dir() and any((tmp_path / "c").iterdir())
    # a later resume keeps fine-tuning with the same plan, without --qat
    assert cli.main(["train", "--out", run, "--resume", "--max-iters", "7", "--quiet"]) == 0
    assert load_checkpoint(run).step == 7


def test_cli_refuses_bad_precision_options_with_one_clear_line(tmp_path, corpus, capsys):
    run = _cli_run(tmp_path, corpus)
    cases = [(["--resume", "--qat", "int9", "--max-iters", "6"], "--qat int9: unknown precision 'int9'"),
             (["--resume", "--qat", str(tmp_path / "nope.json"), "--max-iters", "6"], "no such plan file"),
             (["--resume", "--precision", "fp16"], "--precision cannot be used with --resume"),
             (["--data", corpus, "--force", "--qat", "int4"], "--qat fine-tunes a trained run")]
    for extra, message in cases:
        assert cli.main(["train", "--out", run, "--quiet", *extra]) == 2
        assert message in capsys.readouterr().err, extra
    with pytest.raises(SystemExit):
        cli.main(["train", "--out", run, "--data", corpus, "--force", "--loss-scale", "-2"])
    assert "--loss-scale" in capsys.readouterr().err
    run2 = _cli_run(tmp_path / "b", corpus)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "tinylm-precision-plan", "version": 1, "layers": {"lm_head": "int4"}}))
    assert cli.main(["train", "--out", run2, "--resume", "--qat", str(plan), "--max-iters", "5", "--quiet"]) == 0
    assert cli.main(["generate", "--run", f"{run2}/qat", "--prompt", "First", "--max-new-tokens", "5"]) == 0
    assert "int4" in json.load(open(f"{run2}/qat/quantized.json"))["plan"]["lm_head"]  # the int4 head, saved
    assert cli.main(["train", "--out", run2, "--resume", "--qat", "int8", "--max-iters", "6", "--quiet"]) == 2
    assert "already fine-tunes for another plan" in capsys.readouterr().err


@pytest.mark.slow
def test_mixprec_benchmark_runs_end_to_end_on_a_small_text(tmp_path, capsys):
    from tinylm.bench import mixprec

    text = tmp_path / "tiny.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    assert mixprec.main(["--data", str(text), "--max-iters", "2", "--eval-interval", "1", "--eval-iters", "1",
                         "--runs", "fp32,fp16"]) == 0
    out = capsys.readouterr().out
    assert "activations kept for backward" in out and "S=65536   flushed   0.00%" in out
    assert "fp16 (dynamic loss scaling) final val loss within 1% of fp32" in out
    with pytest.raises(ValueError, match="unknown run 'fp8'"):
        mixprec.main(["--data", str(text), "--runs", "fp8"])
