"""A tinylm model generating text on an emulated Cortex-M, inside an STM32F405's memory budget.

    python kernels/targets/cortex-m/board.py EXPORT_DIR --core m4 -n 40 -i "ROMEO:"
    python kernels/targets/cortex-m/board.py EXPORT_DIR --core m55 --count    # + instructions/token

EXPORT_DIR is what `tinylm export --format c` writes (model_data.c / model_data.h: the blob as a
const array). The program is gen.c + runtime/tinylm_runtime.c + kernels/*.c + model_data.c, linked
with stm32f405.ld (1 MB flash, 128 KB SRAM for the arena, 64 KB CCM for the rest): a model that
does not fit the part fails to link, with the linker script's message (LinkError). The program runs
under qemu-system-arm with semihosting and prints the token ids and the text it generated.

With --count, the QEMU plugin qemu-plugin/count_funcs.c counts the instructions of every generated
token and how many of them ran inside kernels/*.c, per kernel file (the runtime's overhead is the
rest). Every object is compiled on its own, so the link map says which bytes of flash and RAM belong
to the model, the runtime, the kernels and the C library. Everything is built in a temporary folder
(or --out DIR). tinylm/bench/runtime_mcu.py turns these into the bench table.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
RUNTIME = os.path.join(ROOT, "runtime")
LINKER_SCRIPT = os.path.join(HERE, "stm32f405.ld")

_spec = importlib.util.spec_from_file_location("tinylm_mcu", os.path.join(HERE, "mcu.py"))
mcu = sys.modules.setdefault("tinylm_mcu", importlib.util.module_from_spec(_spec))
if not hasattr(mcu, "CORES"):
    _spec.loader.exec_module(mcu)

BOARD_CORES = ("m4", "m55")     # the STM32F4's core, and the Helium one for comparison
AN547_CODE_BYTES = 512 * 1024   # the M55 board (mps3-an547) loads code into a 512 KB ITCM at 0


class LinkError(RuntimeError):
    """The image does not fit the budget (or does not link): the linker's own words are the message."""


def memory_regions(script: str = LINKER_SCRIPT) -> dict:
    """{region: (origin, length in bytes)} from the MEMORY block of the linker script.

    >>> memory_regions()["SRAM"]
    (536870912, 131072)
    """
    with open(script, encoding="utf-8") as f:
        text = f.read()
    regions = {}
    for name, origin, length, unit in re.findall(
            r"^\s*(\w+)\s*\([rwx]+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9a-fA-F]+)\s*,\s*LENGTH\s*=\s*(\d+)([KM]?)",
            text, re.MULTILINE):
        regions[name] = (int(origin, 16), int(length) * {"": 1, "K": 1024, "M": 1024 * 1024}[unit])
    return regions


# ---- building -----------------------------------------------------------------------------------

def runtime_sources() -> list:
    """runtime/*.c without the host program (main.c reads files; the board has none)."""
    return sorted(os.path.join(RUNTIME, f) for f in os.listdir(RUNTIME)
                  if f.endswith(".c") and f != "main.c")


def write_prompt_header(folder: str, prompt: str, n_tokens: int, seed: int = 0, temperature: float = 0.0,
                        top_k: int = 0, top_p: float = 1.0) -> str:
    """gen_config.h: what gen.c generates (the prompt as a C string literal, byte by byte)."""
    literal = "".join(f"\\x{b:02x}" for b in prompt.encode("utf-8"))
    path = os.path.join(folder, "gen_config.h")
    with open(path, "w", encoding="utf-8") as f:
        f.write("/* written by board.py: what gen.c generates */\n"
                f"#define GEN_PROMPT \"{literal}\"\n"
                f"#define GEN_N_TOKENS {int(n_tokens)}\n"
                f"#define GEN_SEED {int(seed)}u\n"
                f"#define GEN_TEMPERATURE {float(temperature)!r}f\n"
                f"#define GEN_TOP_K {int(top_k)}\n"
                f"#define GEN_TOP_P {float(top_p)!r}f\n")
    return path


@dataclass
class Image:
    """A linked model program: the ELF, its link map, and which object each source became."""
    core: mcu.Core
    elf: str
    map: str
    objects: dict = field(default_factory=dict)    # {object path: "kernel" | "runtime" | "model" | "program"}


def build(core_name: str, export_dir: str, folder: str, prompt: str, n_tokens: int, arena_bytes: int,
          opt: str = "-O2", **sampling) -> Image:
    """Compile every source to its own object (so the map can tell them apart), then link with the
    STM32F405 budget. Raises LinkError with the linker's message when the image does not fit."""
    core = mcu.get_core(core_name)
    write_prompt_header(folder, prompt, n_tokens, **sampling)
    sources = [(s, "kernel") for s in mcu.kernel_sources()] + [(s, "runtime") for s in runtime_sources()]
    sources += [(os.path.join(export_dir, "model_data.c"), "model"), (os.path.join(HERE, "gen.c"), "program"),
                (os.path.join(HERE, "startup.c"), "program")]
    objects = {}
    for source, kind in sources:
        obj = os.path.join(folder, f"{kind}-{os.path.basename(source)[:-2]}.o")
        mcu.compile_object(core, source, obj, opt,
                           extra=(f"-I{RUNTIME}", f"-I{export_dir}", f"-I{folder}",
                                  f"-DTINYLM_ARENA_BYTES={int(arena_bytes)}u"))
        objects[obj] = kind
    elf = os.path.join(folder, f"gen_{core.name}.elf")
    map_path = elf[:-4] + ".map"
    cmd = [mcu.GCC, *core.flags, "-mthumb", *objects, "--specs=rdimon.specs", "-nostartfiles",
           "-T", LINKER_SCRIPT, "-Wl,--gc-sections", f"-Wl,-Map={map_path}", "-o", elf]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        messages = re.findall(r"ld: (tinylm: .*)$", done.stderr, re.MULTILINE)
        raise LinkError("\n".join(messages) if messages else done.stderr.strip())
    return Image(core, elf, map_path, objects)


# ---- the link map -------------------------------------------------------------------------------

_INPUT = re.compile(r"^ (\.\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_OUTPUT = re.compile(r"^(\.\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)")


def read_map(map_path: str):
    """(output sections {name: (address, size)}, input sections [(output section, name, address, size,
    file)]) from a GNU ld map, after its "Linker script and memory map" line. A long section name sits
    alone on its line and its address, size and file on the next one: the two are joined first."""
    with open(map_path, encoding="utf-8") as f:
        text = f.read()
    text = text[text.index("Linker script and memory map"):]
    text = re.sub(r"^( ?\.\S+)\n\s+(0x)", r"\1 \2", text, flags=re.MULTILINE)
    outputs, inputs, current = {}, [], None
    for line in text.splitlines():
        m = _OUTPUT.match(line)
        if m:
            current = m.group(1)
            outputs[current] = (int(m.group(2), 16), int(m.group(3), 16))
            continue
        m = _INPUT.match(line)
        if m and m.group(1) and int(m.group(3), 16) > 0:
            inputs.append((current, m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip()))
    return outputs, inputs


def memory_use(image: Image) -> dict:
    """Bytes of flash and RAM, by owner, from the link map.

    flash: model (the const blob), runtime, kernels, program (gen.c + startup), libc (newlib, libgcc);
    sram: the arena; ccm: .data + .bss, plus the heap and stack the linker script reserves."""
    outputs, inputs = read_map(image.map)
    flash = {"model": 0, "runtime": 0, "kernels": 0, "program": 0, "libc": 0}
    flash_end = outputs[".data"][1] + sum(outputs[s][1] for s in (".text", ".ARM.exidx") if s in outputs)
    # what the image stores in flash, by address; merged string sections share bytes: each byte is
    # counted once, for the first section that holds it
    stored = sorted((x for x in inputs if x[0] in (".text", ".ARM.exidx", ".data")),
                    key=lambda x: (x[0] == ".data", x[2]))
    for (output, name, address, size, path), following in zip(stored, stored[1:] + [None]):
        if following is not None and following[0] == output:
            size = max(0, min(size, following[2] - address))
        kind = image.objects.get(path, "libc")
        flash["kernels" if kind == "kernel" else kind] += size
    regions = memory_regions()
    with open(LINKER_SCRIPT, encoding="utf-8") as f:
        script = f.read()
    reserve = sum(int(n) * 1024 for n in re.findall(r"^(?:STACK|HEAP)_BYTES\s*=\s*(\d+)K;", script, re.MULTILINE))
    return {
        "flash": flash_end, "flash_budget": regions["FLASH"][1], "flash_by_owner": flash,
        "sram": outputs[".tinylm_arena"][1], "sram_budget": regions["SRAM"][1],
        "ccm": outputs[".data"][1] + outputs[".bss"][1] + reserve, "ccm_budget": regions["CCM"][1],
    }


def kernel_ranges(image: Image):
    """([(lo, hi, bucket)], [bucket names]): every function of kernels/*.c, one bucket per file."""
    _, inputs = read_map(image.map)
    names, ranges = [], []
    for output, name, address, size, path in inputs:
        if image.objects.get(path) != "kernel" or output != ".text" or not name.startswith(".text"):
            continue
        bucket_name = os.path.basename(path)[len("kernel-"):-2]
        if bucket_name not in names:
            names.append(bucket_name)
        ranges.append((address, address + size, names.index(bucket_name)))
    return ranges, names


# ---- running ------------------------------------------------------------------------------------

@dataclass
class Generation:
    tokens: list            # the generated token ids (the prompt's not included)
    text: str               # what the program printed as text
    stdout: str
    spans: list = field(default_factory=list)    # with the plugin, 3 spans (gen.c): [total, kernel
    buckets: list = field(default_factory=list)  # file 0, kernel file 1, ...]; the kernel files
    window: int = 0                              # tokens generated by span 2 (block_size - prompt)

    def per_token(self, span: int = 3) -> dict:
        """Instructions of one generated token: span 3 averages tokens 2 .. n, refills included; span 2
        tokens 2 .. window, inside one context window. {"total", "kernels", kernel file: ...}."""
        n = len(self.tokens) if span == 3 else self.window
        if len(self.spans) != 3 or n < 2:
            raise ValueError(f"expected 3 spans and >= 2 tokens, got {len(self.spans)} spans, {n} tokens")
        diff = [(b - a) / (n - 1) for a, b in zip(self.spans[0], self.spans[span - 1])]
        result = {"total": diff[0], "kernels": sum(diff[1:])}
        result.update(zip(self.buckets, diff[1:]))
        return result


def _symbol(elf: str, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise RuntimeError(f"{elf}: symbol {name} not found")


def build_plugin(folder: str, header_dir: str) -> str:
    """Compile qemu-plugin/count_funcs.c (host C) against QEMU's qemu-plugin.h."""
    out = os.path.join(folder, "libcount_funcs.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{header_dir}",
                    os.path.join(HERE, "qemu-plugin", "count_funcs.c"), "-o", out], check=True)
    return out


def run(image: Image, plugin: str | None = None, timeout: float = 300) -> Generation:
    """Run the program on its board; with `plugin` (count_funcs.so), count every token's instructions."""
    plugin_args, buckets = [], []
    if plugin:
        ranges, buckets = kernel_ranges(image)
        ranges_path = image.elf[:-4] + ".ranges"
        with open(ranges_path, "w", encoding="utf-8") as f:
            f.writelines(f"{lo:x} {hi:x} {b}\n" for lo, hi, b in ranges)
        plugin_args = ["-plugin", f"{plugin},begin={_symbol(image.elf, 'tl_mark_begin'):#x},"
                                  f"end={_symbol(image.elf, 'tl_mark_end'):#x},ranges={ranges_path}",
                       "-d", "plugin"]
    cmd = [mcu.QEMU, "-M", image.core.machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", *plugin_args, "-kernel", image.elf]
    done = subprocess.run(cmd, capture_output=True, timeout=timeout)   # bytes: a token may end mid-character
    stdout, stderr = (done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))
    if done.returncode != 0:
        raise RuntimeError(f"the model program exited with {done.returncode} on {image.core.machine}:\n"
                           f"{stdout}{stderr}")
    m = re.search(r"^tokens:((?: \d+)*)$", stdout, re.MULTILINE)
    if not m:
        raise RuntimeError(f"no 'tokens:' line in the program's output:\n{stdout}")
    text = done.stdout.split(b"\ntext:\n", 1)[1].decode("utf-8", "replace")
    spans = [[int(v) for v in line.split()[1:]] for line in stderr.splitlines() if line.startswith("span ")]
    n_prompt = int(re.search(r"^prompt: (\d+) tokens$", stdout, re.MULTILINE).group(1))
    block_size = int(re.search(r"^block_size: (\d+)$", stdout, re.MULTILINE).group(1))
    return Generation([int(t) for t in m.group(1).split()], text, stdout, spans, buckets, block_size - n_prompt)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="a folder written by `tinylm export --format c`")
    parser.add_argument("--core", default="m4", choices=BOARD_CORES)
    parser.add_argument("-n", "--n-tokens", type=int, default=40, help="tokens to generate (default 40)")
    parser.add_argument("-i", "--prompt", default="\n", help="the prompt (default a newline)")
    parser.add_argument("--count", action="store_true", help="count instructions with the QEMU plugin")
    parser.add_argument("--out", help="build folder (default: a temporary one, deleted afterwards)")
    args = parser.parse_args(argv)
    reason = mcu.toolchain_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    sys.path.insert(0, ROOT)
    from tinylm.bench import runtime_mcu
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or tmp
        os.makedirs(folder, exist_ok=True)
        result = runtime_mcu.measure_export(args.export_dir, args.core, folder, args.prompt, args.n_tokens,
                                            count=args.count)
        if "generation" in result:
            print(args.prompt + result["generation"].text)
        print(runtime_mcu.format_rows([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
