"""Hostile files, killed runs and bad numbers (issue 17, items 2-7): each is a one-line error or the right
behaviour, never a traceback, a hang, a huge allocation or a silently wrong result.

Every test here failed on the code before the fix (checked by running this file against that commit).
The sections follow the issue's numbered items.
"""
import base64
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import tinylm.train as train_module
from tinylm import cli, fileio, kernels
from tinylm.bpe import files as bpe_files
from tinylm.io import hf_gpt2, quantized, runs
from tinylm.io.safetensors import read_safetensors
from tinylm.quant.evaluate import Evaluator
from tinylm.tokenizer import Tokenizer
from tinylm.train import perplexity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TINY_RUN = ["--vocab-size", "256", "--n-layer", "1", "--n-head", "1", "--n-embd", "8", "--block-size", "8",
            "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2", "--quiet"]


def tinylm(capsys, *argv):
    """Run the tinylm command in this process: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run (4 steps, ~0.5 s), copied by `run` for each test that changes it."""
    folder = tmp_path_factory.mktemp("trained")
    corpus = folder / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    assert cli.main(["train", "--data", str(corpus), "--out", str(folder / "run"), *TINY_RUN]) == 0
    return folder


@pytest.fixture
def run(trained, tmp_path):
    shutil.copytree(trained / "run", tmp_path / "run")
    shutil.copy(trained / "corpus.txt", tmp_path / "corpus.txt")
    return tmp_path / "run"


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _recommit(run_dir, name):
    """Give state.json the new hash of a file the test edited, as a careful attacker would."""
    state = json.loads((run_dir / "state.json").read_text())
    state["files"][name] = runs._sha256(run_dir / name)
    (run_dir / "state.json").write_text(json.dumps(state))


# -----------------------------------------------------------------------------------------------------
# 2. tracebacks from hostile files and extreme numbers


def test_deeply_nested_json_is_a_one_line_error(run, capsys):
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    _recommit(run, "config.json")
    status, _, err = tinylm(capsys, "eval", "--run", run)
    assert status == 2
    assert "nested too deeply" in err and "Traceback" not in err


@pytest.mark.parametrize("name, change, message", [
    ("state.json", lambda s: s.pop("step"), "step is None; expected an integer >= 0"),
    ("state.json", lambda s: s.update(step=float("inf")), "step is inf; expected an integer >= 0"),
    ("state.json", lambda s: s.update(step=-3), "step is -3; expected an integer >= 0"),
    ("loss.json", lambda h: h.pop("lr"), "'lr' must be a list"),
])
def test_state_and_history_with_missing_or_impossible_fields_are_named(run, capsys, name, change, message):
    _edit_json(run / name, change)
    if name != "state.json":
        _recommit(run, name)
    status, _, err = tinylm(capsys, "train", "--out", run, "--resume", "--max-iters", "6", "--quiet")
    assert status == 2
    assert message in err


def test_an_optimizer_step_of_minus_one_is_refused_not_divided_by(run, capsys):
    arrays = fileio.load_npz(run / "optimizer.npz")
    arrays["state.0.step"] = np.asarray(-1)
    fileio.save_npz(run / "optimizer.npz", arrays)
    _recommit(run, "optimizer.npz")
    status, _, err = tinylm(capsys, "train", "--out", run, "--resume", "--max-iters", "6", "--quiet")
    assert status == 2
    assert "state.0.step is -1; expected one integer >= 0" in err


def test_a_loss_above_709_nats_reports_an_infinite_perplexity(run, capsys):
    arrays = fileio.load_npz(run / "model.npz")
    arrays["transformer.wte.weight"] = arrays["transformer.wte.weight"] * np.float32(1e6)  # absurd logits
    fileio.save_npz(run / "model.npz", arrays)
    _recommit(run, "model.npz")
    status, out, _ = tinylm(capsys, "eval", "--run", run)
    assert status == 0
    assert "perplexity inf" in out
    assert perplexity(710.0) == float("inf") and perplexity(0.0) == 1.0


def test_a_pattern_with_capture_groups_is_refused_when_set():
    with pytest.raises(ValueError, match="capture group"):  # findall would give the groups: AttributeError
        Tokenizer(pattern=r"(\w+)|\s+").encode("hello world")
    with pytest.raises(ValueError, match="capture group"):
        Tokenizer().train("hello world " * 10, 260, pattern=r"(\w+)|(\s+)")


def test_sizes_too_large_for_memory_are_a_clear_error_before_allocating(run, capsys):
    status, _, err = tinylm(capsys, "train", "--data", run.parent / "corpus.txt", "--out", run.parent / "big",
                            "--n-embd", "65536", "--n-head", "1", "--quiet")
    assert status == 2
    assert "training with n_head=1, n_embd=65536, batch_size=12 needs about" in err and "available" in err
    status, _, err = tinylm(capsys, "eval", "--run", run, "--batch-size", "200000000", "--iters", "1")
    assert status == 2
    assert "evaluating batches of 200000000 sequences needs about" in err


# -----------------------------------------------------------------------------------------------------
# 3. memory blow-ups from small files


def _zip_bomb(path, megabytes):
    """An .npz whose one member inflates to `megabytes` of zeros from a few hundred KB."""
    header = {"descr": "<i4", "fortran_order": False, "shape": (megabytes << 18,)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("train.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, header)
        chunk = bytes(1 << 20)
        for _ in range(megabytes):
            f.write(chunk)


def test_an_npy_header_numpy_cannot_tokenize_is_a_clear_error(tmp_path):
    """Found by the atheris npz target: an unclosed bracket in a .npy header made numpy's header parser
    raise tokenize.TokenError, which is neither ValueError nor OSError."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,\n"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(12)
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy)
    with pytest.raises(ValueError, match="bad.npz"):
        fileio.load_npz(path, "weights file")


def test_an_npz_that_inflates_a_thousandfold_is_refused_before_it_is_decompressed(tmp_path):
    _zip_bomb(tmp_path / "tokens.npz", 64)
    assert os.path.getsize(tmp_path / "tokens.npz") < 1_000_000
    with pytest.raises(ValueError, match=r"would inflate .* \(more than 32x\)"):
        fileio.load_npz(tmp_path / "tokens.npz")


def test_an_npy_header_whose_shape_lies_about_its_bytes_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as z, z.open("w.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
        f.write(bytes(16))
    with pytest.raises(ValueError, match=r"declares shape \(1000000000000,\)"):
        fileio.load_npz(path)


def test_a_run_config_far_larger_than_its_weights_allocates_nothing(run):
    _edit_json(run / "config.json", lambda c: c["model"].update(n_layer=100_000))
    _recommit(run, "config.json")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="describes a model of .* parameters: the config does not belong"):
        runs.load_model(run)
    assert time.perf_counter() - start < 5.0  # (before the fix: minutes, or out of memory)


def test_a_hugging_face_config_far_larger_than_its_weights_is_refused(tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(os.path.join(FIXTURES, "tiny-gpt2"), folder)
    _edit_json(folder / "config.json", lambda c: c.update(n_layer=100_000))
    with pytest.raises(ValueError, match="the config does not belong to these weights"):
        hf_gpt2.load_hf_gpt2(folder)


# -----------------------------------------------------------------------------------------------------
# 4. silently mixed run folders


def test_tokens_of_another_run_are_refused_not_read(run, capsys):
    train_ids, val_ids = runs.load_tokens(run)
    runs.save_tokens(run, train_ids[::-1].copy(), val_ids[::-1].copy())  # other ids, same tokenizer
    with pytest.raises(ValueError, match="tokens.npz does not match its SHA-256 in state.json"):
        runs.load_tokens(run)
    status, _, err = tinylm(capsys, "eval", "--run", run)
    assert status == 2 and "SHA-256" in err


def test_a_force_restart_killed_before_its_first_checkpoint_leaves_no_mixed_run(run, capsys, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a SIGKILL after the new tokens, before the first commit

    monkeypatch.setattr(train_module, "train", killed)
    other = run.parent / "other.txt"
    other.write_text("a completely different corpus, with other words in it. " * 200)
    status, _, _ = tinylm(capsys, "train", "--data", other, "--out", run, "--force", *TINY_RUN)
    assert status == 130
    assert not (run / "state.json").exists() and not (run / "model.npz").exists()
    status, _, err = tinylm(capsys, "eval", "--run", run)
    assert status == 2 and "not found" in err
    status, _, err = tinylm(capsys, "train", "--out", run, "--resume")
    assert status == 2 and "holds no checkpoint" in err


HOLD_LOCK = """
import sys, time
from tinylm.io.runs import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_training_into_a_locked_folder_is_refused(run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(FIXTURES), env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert holder.stdout.readline() == "held\n"
        status, _, err = tinylm(capsys, "train", "--out", run, "--resume", "--max-iters", "6", "--quiet")
        assert status == 2
        assert f"another tinylm training (process {holder.pid}) is writing {run}" in err
        checkpoint = runs.load_checkpoint(run)
        config = train_module.TrainConfig.from_dict({**checkpoint.train_config, "max_iters": 6})
        train_ids, val_ids = runs.load_tokens(run)
        with pytest.raises(BlockingIOError, match="another tinylm training"):  # the API refuses too
            train_module.train(checkpoint.model, train_ids, val_ids, config, tokenizer=checkpoint.tokenizer,
                               run_dir=run, resume=checkpoint, verbose=False)
    finally:
        holder.kill()  # SIGKILL: the lock goes with its holder, however it ends
        holder.wait()
    status, _, _ = tinylm(capsys, "train", "--out", run, "--resume", "--max-iters", "6", "--quiet")
    assert status == 0


def test_a_stale_lock_and_temporary_files_of_a_killed_run_are_cleaned_at_the_next_start(run, capsys):
    (run / "run.lock").write_text("999999999\n")  # left by a process that no longer exists
    (run / ".model.npz.next.k1ll3d.tmp").write_bytes(b"half a file")
    status, _, _ = tinylm(capsys, "train", "--out", run, "--resume", "--max-iters", "6", "--quiet")
    assert status == 0
    assert not (run / ".model.npz.next.k1ll3d.tmp").exists() and not (run / "run.lock").exists()


# -----------------------------------------------------------------------------------------------------
# 5. hangs


def test_a_catastrophic_pattern_from_a_file_is_refused_unless_trusted_and_then_times_out(tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    path.write_text(bpe_files.tokenizer_to_json(r"(?:a|aa)+$|[\s\S]", range(256), [], {}))
    with pytest.raises(ValueError, match="custom pre-split pattern .* trust_pattern=True"):
        Tokenizer.load(path)
    tok = Tokenizer.load(path, trust_pattern=True)
    monkeypatch.setattr("tinylm.tokenizer.SPLIT_SECONDS", 0.3)  # the limit, shortened for the test
    tok = Tokenizer.load(path, trust_pattern=True)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="backtracks catastrophically"):
        tok.encode("a" * 60 + "b")
    assert time.perf_counter() - start < 5.0


def test_a_tiktoken_file_with_one_very_long_token_reads_in_linear_time(tmp_path):
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    lines += [f"{base64.b64encode(b'a' * 2**k).decode()} {255 + k}" for k in range(1, 16)]  # a, aa, ... 32768 a
    path = tmp_path / "long.tiktoken"
    path.write_text("\n".join(lines))
    start = time.perf_counter()
    tok = Tokenizer.from_tiktoken_file(path, pattern=None)
    assert time.perf_counter() - start < 3.0
    assert tok.encode("a" * 40) == [255 + 5, 255 + 3]  # 32 + 8


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_dev_zero_as_a_tokenizer_file_is_refused_without_opening_it(tmp_path, kind):
    vocab, merges = os.path.join(FIXTURES, "tiny-gpt2", "vocab.json"), tmp_path / "merges.txt"
    if kind == "fifo":
        os.mkfifo(merges)
    else:
        os.symlink("/dev/zero", merges)
    with pytest.raises(ValueError, match="is not a regular file"):
        Tokenizer.from_gpt2_files(vocab, merges)
    with pytest.raises(ValueError, match="is not a regular file"):
        Tokenizer.from_tiktoken_file(merges)


@pytest.mark.parametrize("field, value", [("grad_accum", 2**63), ("eval_iters", 2**32)])
def test_a_run_config_asking_for_endless_work_is_refused_at_resume(run, capsys, field, value):
    _edit_json(run / "config.json", lambda c: c["train"].update({field: value}))
    _recommit(run, "config.json")
    status, _, err = tinylm(capsys, "train", "--out", run, "--resume", "--max-iters", "6", "--quiet")
    assert status == 2
    assert f"{field} is {value}; expected an integer from 1 to" in err


def test_a_safetensors_header_with_millions_of_empty_tensors_is_refused_early(tmp_path):
    header = json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                         for i in range(300_000)}).encode()
    path = tmp_path / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="more than 100,000 tensors"):
        read_safetensors(path)
    assert time.perf_counter() - start < 5.0  # (before the fix: minutes, or out of memory)


# -----------------------------------------------------------------------------------------------------
# 6. a truncated merges.txt


def test_a_truncated_merges_txt_is_refused_not_read_as_special_tokens(tmp_path):
    source = os.path.join(FIXTURES, "tiny-gpt2")
    lines = open(os.path.join(source, "merges.txt"), encoding="utf-8").read().splitlines()
    (tmp_path / "merges.txt").write_text("\n".join(lines[: len(lines) // 2]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merges.txt is truncated or belongs to another vocabulary"):
        Tokenizer.from_gpt2_files(os.path.join(source, "vocab.json"), tmp_path / "merges.txt")
    whole = Tokenizer.from_gpt2_files(os.path.join(source, "vocab.json"), os.path.join(source, "merges.txt"))
    assert list(whole.special_tokens) == ["<|endoftext|>"]


# -----------------------------------------------------------------------------------------------------
# 7. minor


def test_a_safetensors_dtype_that_is_a_list_names_the_file(tmp_path):
    header = json.dumps({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "list.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(ValueError, match=r"list.safetensors is not a valid safetensors file: .* unknown dtype"):
        read_safetensors(path)


def test_zero_is_not_read_as_use_the_default(run, capsys):
    status, _, err = tinylm(capsys, "train", "--data", run.parent / "corpus.txt", "--out", run.parent / "v0",
                            "--vocab-size", "0", "--quiet")
    assert status == 2 and "--vocab-size is 0; expected 256" in err
    status, _, err = tinylm(capsys, "quantize", "--run", run, "--block-size", "0")
    assert status == 2 and "--block-size must be >= 1, got 0" in err


def test_saved_files_get_the_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        fileio.save_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644


def test_an_export_that_fails_on_a_full_disk_leaves_nothing_to_refuse(run, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hf_gpt2.fileio, "save_json", full_disk)  # model.safetensors written, then the disk is full
    out = run.parent / "exported"
    status, _, err = tinylm(capsys, "export", "--run", run, "--out", out)
    assert status == 2 and "No space left on device" in err
    assert not out.exists()
    monkeypatch.undo()
    status, _, _ = tinylm(capsys, "export", "--run", run, "--out", out)
    assert status == 0


def test_a_quantized_save_that_fails_on_a_full_disk_leaves_nothing_to_refuse(run, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quantized, "save_json", full_disk)  # weights.npz written, then the disk is full
    out = run.parent / "quantized"
    args = ["quantize", "--run", run, "--plan", "int8:g8", "--out", out, "--gen-tokens", "0", "--eval-batches", "1"]
    status, _, err = tinylm(capsys, *args)
    assert status == 2 and "No space left on device" in err
    assert not out.exists()
    monkeypatch.undo()
    status, _, _ = tinylm(capsys, *args)
    assert status == 0


def test_an_unwritable_target_is_found_before_the_work(run, capsys):
    (run.parent / "a-file").write_text("")
    status, _, err = tinylm(capsys, "export", "--run", run, "--out", run.parent / "a-file" / "out")
    assert status == 2 and "is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_target_is_found_before_the_work(run, capsys):
    target = run.parent / "read-only"
    target.mkdir(mode=0o555)
    status, _, err = tinylm(capsys, "export", "--run", run, "--out", target / "out")
    assert status == 2 and "is not writable" in err


def test_an_output_in_a_missing_folder_does_not_create_folders_up_to_the_root(run, capsys):
    missing = run.parent / "missing"
    status, _, err = tinylm(capsys, "tokenizer", "vocab", "--tokenizer", run / "tokenizer.json",
                            "--out", missing / "deeper" / "x.txt")
    assert status == 2 and "does not exist" in err
    assert not missing.exists()


def test_dequantize_s8_of_zero_rows_is_an_empty_result():
    y = kernels.dequantize_s8(np.zeros((0, 4), np.int8), np.zeros((0, 1), np.float32))
    assert y.shape == (0, 4) and y.dtype == np.float32


def test_zero_dimensional_kernel_inputs_stay_zero_dimensional():
    assert kernels.f32_to_f16(np.float32(1.5)).shape == ()
    assert kernels.f16_to_f32(np.float16(1.5)).shape == ()


def test_negative_scales_and_non_finite_weight_scales_are_refused():
    q = np.ones((2, 4), np.int8)
    with pytest.raises(ValueError, match="scale holds a negative value"):
        kernels.dequantize_s8(q, np.array([[1.0], [-1.0]], np.float32))
    with pytest.raises(ValueError, match="w_scale holds a negative or non-finite value"):
        kernels.LinearS8(q, np.array([[1.0], [np.nan]], np.float32))
    # NaN is what quantize_s8 gives a group that held NaN: dequantizing it gives NaN back, as documented
    assert np.isnan(kernels.dequantize_s8(q, np.array([[1.0], [np.nan]], np.float32))[1]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_optimizer_moments_of_another_dtype_are_refused_not_cast(run, dtype):
    arrays = fileio.load_npz(run / "optimizer.npz")
    arrays["state.0.exp_avg"] = arrays["state.0.exp_avg"].astype(dtype)
    fileio.save_npz(run / "optimizer.npz", arrays)
    _recommit(run, "optimizer.npz")
    with pytest.raises(ValueError, match=f"state.0.exp_avg has dtype {np.dtype(dtype)}; expected float32"):
        runs.load_checkpoint(run)


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_weights_of_another_dtype_are_refused_not_cast(run, dtype):  # (refused already before issue 17)
    arrays = fileio.load_npz(run / "model.npz")
    arrays["transformer.ln_f.weight"] = arrays["transformer.ln_f.weight"].astype(dtype)
    fileio.save_npz(run / "model.npz", arrays)
    _recommit(run, "model.npz")
    with pytest.raises(ValueError, match=f"transformer.ln_f.weight has dtype {np.dtype(dtype)}; expected float32"):
        runs.load_model(run)


def test_an_evaluator_with_block_size_zero_is_refused_not_given_the_default(run):  # quantize's API twin
    model, _ = runs.load_model(run)
    with pytest.raises(ValueError, match="block_size is 0; expected 1 .. the model's 8"):
        Evaluator(model, np.arange(100), block_size=0)
