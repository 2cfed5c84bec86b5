"""Benchmarks that print ratios against NumPy and peers measured in the same run.

    python -m tinylm.bench kernels      # C kernels vs NumPy
    python -m tinylm.bench tokenizer    # BPE training and encoding throughput
    python -m tinylm.bench autograd     # engine vs hand-written NumPy forward/backward
    python -m tinylm.bench train        # nanoGPT's Shakespeare run: loss and ms/step vs PyTorch
    python -m tinylm.bench generate     # tokens/s with and without the KV cache
    python -m tinylm.bench quant        # fp32 / fp16 / int8 models: size, perplexity, speed
    python -m tinylm.bench runtime      # the C runtime vs the NumPy path, tokens/s, bandwidth limit
    python -m tinylm.bench mixprec      # fp16/bf16 mixed-precision training vs fp32: loss, memory, underflow

Each suite is a module tinylm/bench/<name>.py with a `main(argv)` function.
"""
SUITES = ["kernels", "tokenizer", "autograd", "train", "generate", "quant", "runtime"]
SUITES += ["mixprec"]  # fp16/bf16 training vs fp32: loss, activation memory, underflow
