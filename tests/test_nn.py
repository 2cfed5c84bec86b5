"""nn modules: registration and names, tied weights, train/eval, state_dict round trips, layers, and
small networks that learn (XOR, a regression)."""
import numpy as np
import pytest

from tinylm import nn
from tinylm.autograd import Tensor, cross_entropy
from tinylm.optim import SGD, AdamW


class Block(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 8, rng=rng)
        self.proj = nn.Linear(8, 4, bias=False, rng=rng)
        self.drop = nn.Dropout(0.5, rng=rng)

    def forward(self, x):
        return x + self.drop(self.proj(self.fc(self.ln(x)).gelu()))


class TinyLM(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.wte = nn.Embedding(10, 4, rng=rng)
        self.h = nn.ModuleList([Block(rng) for _ in range(2)])
        self.head = nn.Linear(4, 10, bias=False, rng=rng)
        self.head.weight = self.wte.weight  # tied

    def forward(self, idx):
        x = self.wte(idx)
        for block in self.h:
            x = block(x)
        return self.head(x)


def test_named_parameters_follow_assignment_order_with_dotted_names():
    names = [n for n, _ in TinyLM().named_parameters()]
    assert names == ["wte.weight",
                     "h.0.ln.weight", "h.0.ln.bias", "h.0.fc.weight", "h.0.fc.bias", "h.0.proj.weight",
                     "h.1.ln.weight", "h.1.ln.bias", "h.1.fc.weight", "h.1.fc.bias", "h.1.proj.weight"]


def test_a_tied_weight_is_one_parameter_and_gets_both_gradients():
    model = TinyLM()
    assert len(model.parameters()) == 11
    assert model.head.weight is model.wte.weight
    model.eval()
    cross_entropy(model(np.array([[1, 2, 3]])), np.array([[2, 3, 4]])).backward()
    g = model.wte.weight.grad
    assert g is not None and g[0].any()  # id 0 never looked up: its gradient comes from the head only


def test_modules_children_train_eval():
    model = TinyLM()
    assert [type(m).__name__ for m in model.children()] == ["Embedding", "ModuleList", "Linear"]
    assert len(model.modules()) == 1 + 1 + 1 + 2 * 5 + 1
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_is_active_only_in_training():
    model = TinyLM()
    idx = np.array([[1, 2, 3]])
    model.eval()
    a, b = model(idx).data, model(idx).data
    np.testing.assert_array_equal(a, b)
    model.train()
    assert not np.array_equal(model(idx).data, a)


def test_same_seed_same_model():
    np.testing.assert_array_equal(TinyLM(3).h[1].fc.weight.data, TinyLM(3).h[1].fc.weight.data)
    assert not np.array_equal(TinyLM(3).h[1].fc.weight.data, TinyLM(4).h[1].fc.weight.data)


def test_state_dict_round_trip():
    a, b = TinyLM(0), TinyLM(1)
    sd = a.state_dict()
    assert "head.weight" not in sd and sd["wte.weight"].dtype == np.float32
    sd["wte.weight"] += 0  # a copy: changing it must not change the model
    sd["h.0.fc.bias"][0] = 123.0
    assert a.h[0].fc.bias.data[0] != 123.0
    b.load_state_dict(sd)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if name != "h.0.fc.bias":
            np.testing.assert_array_equal(pa.data, pb.data)
    assert b.h[0].fc.bias.data[0] == 123.0
    assert b.head.weight is b.wte.weight  # still tied after loading


def test_load_state_dict_accepts_the_second_name_of_a_tied_weight():
    model = TinyLM()
    sd = model.state_dict()
    sd["head.weight"] = sd.pop("wte.weight") + 1
    model.load_state_dict(sd)
    np.testing.assert_array_equal(model.wte.weight.data, sd["head.weight"])


def test_load_state_dict_errors_name_what_is_wrong():
    model = TinyLM()
    sd = model.state_dict()
    del sd["h.1.fc.bias"]
    sd["h.9.fc.bias"] = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match=r"missing h\.1\.fc\.bias; unexpected h\.9\.fc\.bias"):
        model.load_state_dict(sd)
    assert model.load_state_dict(sd, strict=False)  # loads what matches
    sd = model.state_dict()
    sd["h.0.fc.weight"] = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"h\.0\.fc\.weight has shape \(4, 8\).*expects \(8, 4\)"):
        model.load_state_dict(sd)


def test_zero_grad_clears_every_gradient():
    model = TinyLM()
    model(np.array([[1, 2]])).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_linear_shapes_init_and_errors():
    layer = nn.Linear(3, 5, rng=np.random.default_rng(0))
    assert layer.weight.shape == (5, 3) and layer.bias.shape == (5,)
    assert np.abs(layer.weight.data).max() <= 1 / np.sqrt(3)
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-6)
    assert nn.Linear(3, 5, bias=False).bias is None
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 3\)"):
        layer(Tensor(np.zeros((2, 4))))
    with pytest.raises(TypeError, match="np.random.Generator"):
        nn.Linear(3, 5, rng=0)


def test_layernorm_without_bias_and_sequential():
    assert [n for n, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(net) == 3 and net(Tensor(np.zeros((5, 2)))).shape == (5, 1)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.Linear(2, 3), "relu")


def test_module_list_indexing():
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    assert isinstance(ml[-1], nn.Tanh) and len(ml) == 2 and len(ml[0:1]) == 1
    with pytest.raises(IndexError):
        ml[2]


def test_mlp_learns_xor():
    nn.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    x = Tensor(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32))
    y = np.array([0, 1, 1, 0])
    opt = AdamW(net.parameters(), lr=0.05, weight_decay=0.0)
    for _ in range(150):
        loss = cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (net(x).data.argmax(axis=1) == y).all()


def test_two_layer_net_fits_a_regression():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (64, 1)).astype(np.float32)
    y = np.sin(x)
    net = nn.Sequential(nn.Linear(1, 16, rng=rng), nn.Tanh(), nn.Linear(16, 1, rng=rng))
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    first = None
    for _ in range(300):
        loss = ((net(Tensor(x)) - y) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 < first


def test_skip_init_allocates_zeros_and_draws_no_random_numbers():
    from tinylm.model import GPT, GPTConfig

    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    with nn.skip_init():
        layer, table = nn.Linear(4, 3, rng=rng), nn.Embedding(6, 4, rng=rng)
        gpt = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0)
    assert rng.bit_generator.state == state                     # the generator did not move
    assert not layer.weight.data.any() and not layer.bias.data.any() and not table.weight.data.any()
    for name, p in gpt.named_parameters():                       # LayerNorm scales 1, everything else 0
        is_norm_scale = (".ln_" in name or name.startswith("transformer.ln_f")) and name.endswith(".weight")
        assert np.all(p.data == (1.0 if is_norm_scale else 0.0)), name
    assert not nn.init_skipped() and nn.Linear(4, 3, rng=rng).weight.data.any()  # outside: drawn again
