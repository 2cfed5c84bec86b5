"""Coverage-guided fuzzing of tinylm's loaders with atheris (libFuzzer's engine for Python).

One target per loader (tests/fuzz/targets.py): safetensors, npz, json, tokenizer, gpt2-files,
tiktoken, plan, run, quantized, hf. A finding is any exception other than ValueError/OSError, a run
over -timeout seconds, or memory over -rss_limit_mb; libFuzzer then writes the input as crash-* /
timeout-* / oom-* in the current folder (reproduce with `python tests/fuzz/fuzz.py TARGET crash-...`).

    pip install atheris                      # wheels for CPython 3.8-3.12 on Linux x86-64

    # what the suite runs (tests/test_fuzz_atheris.py): every target, a few seconds each
    python tests/fuzz/fuzz.py safetensors -runs=2000 -max_total_time=3

    # a longer run for a person: an hour per target, a corpus kept between runs, 2 GB memory cap
    mkdir -p fuzz-corpus/run
    python tests/fuzz/fuzz.py run fuzz-corpus/run -max_total_time=3600 -rss_limit_mb=2048 -timeout=10

    # every target, 10 minutes each, 2 jobs in parallel
    for t in safetensors npz json tokenizer gpt2-files tiktoken plan run quantized hf; do
        python tests/fuzz/fuzz.py $t -max_total_time=600 -jobs=2 -workers=2; done

The valid seeds of each target are written to a temporary corpus folder and passed to libFuzzer
first, so mutation starts from files that load (a folder given on the command line is used too).
"""
import os
import sys
import tempfile

import atheris

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(TESTS), TESTS]  # this checkout's tinylm, and tests/fuzz/targets.py
with atheris.instrument_imports(include=["tinylm"]):  # coverage of tinylm's code guides the mutations
    from fuzz import targets


def main(argv):
    if len(argv) < 2 or argv[1] not in targets.TARGETS:
        print(f"usage: python {argv[0]} TARGET [corpus folders or crash files] [libFuzzer flags]\n"
              f"targets: {', '.join(targets.TARGETS)}", file=sys.stderr)
        return 2
    name = argv[1]
    seed_folder = tempfile.mkdtemp(prefix=f"tinylm-fuzz-seeds-{name}-")
    for i, data in enumerate(targets.seeds(name)):
        with open(os.path.join(seed_folder, f"seed-{i}"), "wb") as f:
            f.write(data)
    extra = [a for a in argv[2:]]
    if not any(os.path.isfile(a) for a in extra):  # not reproducing one input: start from the seeds
        extra.append(seed_folder)

    def one_input(data):
        targets.check(name, data)

    atheris.Setup([argv[0], *extra], one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
