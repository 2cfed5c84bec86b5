"""An independent NumPy re-reading of llama2.c's run.c and runq.c, for the tests of tinylm.io.llama2c.

Written from the C sources (karpathy/llama2.c: read_checkpoint, memory_map_weights, forward, encode,
decode), not from tinylm: it walks the file with a pointer as run.c does, computes one token at a time
in float32 with its own KV cache, and rotates adjacent pairs with run.c's float32 frequencies. If
tinylm's writer or its RoPE convention were wrong, these logits would differ from tinylm's.
"""
import struct

import numpy as np


class RunC:
    """run.c (version 0 files) or runq.c (version 2 files) as NumPy: `RunC(path).forward(token, pos)`."""

    def __init__(self, path):
        data = open(path, "rb").read()
        magic, version = struct.unpack_from("<Ii", data, 0)
        self.quantized = magic == 0x616B3432
        if self.quantized:  # runq.c: magic, version 2, Config, shared flag, group size, 256-byte header
            assert version == 2
            cfg = struct.unpack_from("<7i", data, 8)
            shared, self.gs = data[36] == 1, struct.unpack_from("<i", data, 37)[0]
            ptr = 256
        else:  # run.c: the Config struct, vocab_size < 0 = unshared classifier
            cfg = struct.unpack_from("<7i", data, 0)
            shared = cfg[5] > 0
            cfg = cfg[:5] + (abs(cfg[5]),) + cfg[6:]
            ptr = 28
        self.dim, self.hidden, self.n_layers, self.n_heads, self.n_kv, self.vocab, self.seq_len = cfg
        dim, hidden, L = self.dim, self.hidden, self.n_layers
        hs = dim // self.n_heads
        kv_dim = dim * self.n_kv // self.n_heads
        self.data, self.ptr = data, ptr

        if not self.quantized:
            self.tok = self._f32(self.vocab * dim).reshape(self.vocab, dim)
            self.rms_att = self._f32(L * dim).reshape(L, dim)
            self.wq = self._f32(L * dim * dim).reshape(L, dim, dim)
            self.wk = self._f32(L * dim * kv_dim).reshape(L, kv_dim, dim)
            self.wv = self._f32(L * dim * kv_dim).reshape(L, kv_dim, dim)
            self.wo = self._f32(L * dim * dim).reshape(L, dim, dim)
            self.rms_ffn = self._f32(L * dim).reshape(L, dim)
            self.w1 = self._f32(L * dim * hidden).reshape(L, hidden, dim)
            self.w2 = self._f32(L * dim * hidden).reshape(L, dim, hidden)
            self.w3 = self._f32(L * dim * hidden).reshape(L, hidden, dim)
            self.rms_final = self._f32(dim)
            self._f32(self.seq_len * hs // 2)  # freq_cis_real: skipped
            self._f32(self.seq_len * hs // 2)  # freq_cis_imag: skipped
            self.wcls = self.tok if shared else self._f32(self.vocab * dim).reshape(self.vocab, dim)
        else:
            self.rms_att = self._f32(L * dim).reshape(L, dim)
            self.rms_ffn = self._f32(L * dim).reshape(L, dim)
            self.rms_final = self._f32(dim)
            q_tok = self._q8(1, self.vocab * dim)[0]
            self.tok = (q_tok[0].astype(np.float32) * np.repeat(q_tok[1], self.gs)).reshape(self.vocab, dim)
            self.wq, self.wk = self._q8(L, dim * dim), self._q8(L, dim * kv_dim)
            self.wv, self.wo = self._q8(L, dim * kv_dim), self._q8(L, dim * dim)
            self.w1, self.w2, self.w3 = (self._q8(L, dim * hidden) for _ in range(3))
            self.wcls = q_tok if shared else self._q8(1, dim * self.vocab)[0]
        assert self.ptr == len(data), "the file holds more than run.c reads"
        self.key_cache = np.zeros((L, self.seq_len, kv_dim), np.float32)
        self.value_cache = np.zeros((L, self.seq_len, kv_dim), np.float32)

    def _f32(self, n):
        a = np.frombuffer(self.data, "<f4", n, self.ptr).astype(np.float32)
        self.ptr += 4 * n
        return a

    def _q8(self, count, n):
        out = []
        for _ in range(count):  # init_quantized_tensors: n int8 values, then n / GS scales
            q = np.frombuffer(self.data, np.int8, n, self.ptr)
            self.ptr += n
            s = np.frombuffer(self.data, "<f4", n // self.gs, self.ptr).astype(np.float32)
            self.ptr += 4 * (n // self.gs)
            out.append((q, s))
        return out

    # -- the blocks, as run.c / runq.c compute them ---------------------------------------------

    @staticmethod
    def rmsnorm(x, w):
        ss = np.float32((x * x).sum(dtype=np.float32) / x.size) + np.float32(1e-5)
        return w * (np.float32(1.0) / np.sqrt(ss) * x)

    def matmul(self, x, w, n, d):
        """W (d, n) @ x (n,); runq.c: x quantized per group (C's round: half away from zero), int32 dots."""
        if not self.quantized:
            return (w.reshape(d, n) @ x).astype(np.float32)
        wq, ws = w
        xg = x.reshape(-1, self.gs)
        xs = np.abs(xg).max(axis=1) / np.float32(127.0)  # (n / GS,)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = xg / xs[:, None]
        xq = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int32)  # round(), then int8
        wq = wq.reshape(d, -1, self.gs).astype(np.int32)  # (d, n / GS, GS)
        ival = (wq * xq[None]).sum(axis=2)  # (d, n / GS) int32 per group
        return (ival.astype(np.float32) * ws.reshape(d, -1) * xs[None]).sum(axis=1).astype(np.float32)

    def forward(self, token, pos):
        dim, hs, L = self.dim, self.dim // self.n_heads, self.n_layers
        kv_dim, kv_mul = dim * self.n_kv // self.n_heads, self.n_heads // self.n_kv
        x = self.tok[token].copy()
        for layer in range(L):
            xb = self.rmsnorm(x, self.rms_att[layer])
            q = self.matmul(xb, self.wq[layer], dim, dim)
            k = self.matmul(xb, self.wk[layer], dim, kv_dim)
            v = self.matmul(xb, self.wv[layer], dim, kv_dim)
            for i in range(0, dim, 2):  # RoPE: adjacent pairs, frequency from i within its head
                head_dim = i % hs
                freq = np.float32(1.0) / np.power(np.float32(10000.0), np.float32(head_dim) / np.float32(hs))
                val = np.float32(pos) * freq
                fcr, fci = np.cos(val, dtype=np.float32), np.sin(val, dtype=np.float32)
                for vec in ((q, k) if i < kv_dim else (q,)):
                    v0, v1 = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = v0 * fcr - v1 * fci, v0 * fci + v1 * fcr
            self.key_cache[layer, pos] = k
            self.value_cache[layer, pos] = v
            out = np.zeros(dim, np.float32)
            for h in range(self.n_heads):
                qh = q[h * hs:(h + 1) * hs]
                kv_head = slice((h // kv_mul) * hs, (h // kv_mul + 1) * hs)  # the key/value head h reads
                keys = self.key_cache[layer, :pos + 1, kv_head]
                att = (keys @ qh) / np.sqrt(np.float32(hs))
                att = np.exp(att - att.max())
                att /= att.sum()
                out[h * hs:(h + 1) * hs] = att @ self.value_cache[layer, :pos + 1, kv_head]
            x = x + self.matmul(out, self.wo[layer], dim, dim)
            xb = self.rmsnorm(x, self.rms_ffn[layer])
            hb = self.matmul(xb, self.w1[layer], dim, self.hidden)
            hb2 = self.matmul(xb, self.w3[layer], dim, self.hidden)
            hb = hb * (np.float32(1.0) / (np.float32(1.0) + np.exp(-hb))) * hb2
            x = x + self.matmul(hb, self.w2[layer], self.hidden, dim)
        x = self.rmsnorm(x, self.rms_final)
        return self.matmul(x, self.wcls, dim, self.vocab)


class RunCTokenizer:
    """run.c's tokenizer: build_tokenizer, encode (BOS, the dummy " ", codepoints or byte + 3, merges by
    best score) and decode (a piece after BOS loses its leading space; <0xXX> becomes the byte)."""

    def __init__(self, path, vocab_size):
        data = open(path, "rb").read()
        self.max_token_length = struct.unpack_from("<i", data, 0)[0]
        at, self.vocab, self.scores = 4, [], []
        for _ in range(vocab_size):
            score, n = struct.unpack_from("<fi", data, at)
            self.vocab.append(data[at + 8:at + 8 + n])
            self.scores.append(score)
            at += 8 + n
        self.lookup = {}
        for i, t in enumerate(self.vocab):
            self.lookup.setdefault(t, i)

    def encode(self, text, bos=True, eos=False):
        raw = text.encode("utf-8")
        tokens = [1] if bos else []
        if raw:
            tokens.append(self.lookup.get(b" ", -1))  # the dummy prefix
        i = 0
        while i < len(raw):  # one UTF-8 codepoint at a time
            n = 1 + (raw[i] >= 0xC0) + (raw[i] >= 0xE0) + (raw[i] >= 0xF0)
            piece = raw[i:i + n]
            if piece in self.lookup:
                tokens.append(self.lookup[piece])
            else:
                tokens.extend(b + 3 for b in piece)  # byte fallback
            i += n
        while True:
            best = None
            for j in range(len(tokens) - 1):
                merged = self.vocab[tokens[j]] + self.vocab[tokens[j + 1]]
                k = self.lookup.get(merged)
                if k is not None and self.scores[k] > -1e10 and (best is None or self.scores[k] > best[0]):
                    best = (self.scores[k], k, j)
            if best is None:
                break
            _, k, j = best
            tokens[j:j + 2] = [k]
        return tokens + ([2] if eos else [])

    def decode(self, prev, token):
        piece = self.vocab[token]
        if prev == 1 and piece[:1] == b" ":
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            piece = bytes([int(piece[3:5], 16)])
        return piece
