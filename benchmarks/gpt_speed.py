"""Two side-by-side speed comparisons for the GPT chapter (book/gpt.ipynb), in one run.

    .venv/bin/python benchmarks/gpt_speed.py             # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/gpt_speed.py --quick     # fewer repeats, a smoke test
    .venv/bin/python benchmarks/gpt_speed.py --threads 1 # one thread (a machine shared with others)

1. **Training.** ``attnbook.DecoderOnly`` at the chapter's shape (vocabulary 69, 4 layers,
   4 heads, d_model 128, context 64, batch 32, learned positions, AdamW) against a plain PyTorch
   model of the same shape written below (one fused q/k/v projection, PyTorch's fused
   ``scaled_dot_product_attention(is_causal=True)``, no argument checks). The plain model is
   first shown to compute the same function (same weights -> same logits). Target: attnbook
   makes >= 0.9x the plain model's optimiser steps per second.
2. **Generation.** Cached greedy decoding with ``attnbook.train.generate`` on a GPT-2-layout
   model (``attnbook.pretrained.gpt2_from_state_dict`` of a small random ``GPT2LMHeadModel``)
   against ``transformers``' ``GPT2LMHeadModel.generate(use_cache=True, do_sample=False)`` on
   the same weights, batch 1 and 8, 256 new tokens, on the CPU. The tokens must be identical.
   Target: attnbook's tokens per second >= 1.0x transformers'.

Each ratio is the median over ``--repeats`` interleaved repeats (a, b, a, b, ...; one ratio per
repeat), so a change in the machine's load hits both sides alike. Prints one Markdown table and
the targets with PASS/MISS.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from attnbook import bench, data, train  # noqa: E402
from attnbook.pretrained import gpt2_from_state_dict  # noqa: E402
from attnbook.transformer import DecoderOnly  # noqa: E402

# the chapter's shape
V, E, H, L, C, BATCH, LR = 69, 128, 4, 4, 64, 32, 2e-3


class PlainBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``; q, k, v from one matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(E), nn.LayerNorm(E)
        self.qkv, self.proj = nn.Linear(E, 3 * E), nn.Linear(E, E)
        self.fc1, self.fc2 = nn.Linear(E, 4 * E), nn.Linear(4 * E, E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, E // H).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, E))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class PlainGPT(nn.Module):
    """Token embedding * sqrt(E) + learned positions, L blocks, final LN, output Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, E), nn.Parameter(torch.zeros(C, E))
        self.blocks = nn.ModuleList(PlainBlock() for _ in range(L))
        self.ln_f, self.head = nn.LayerNorm(E), nn.Linear(E, V)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) * E**0.5 + self.wpe[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def copy_into_plain(model: DecoderOnly, plain: PlainGPT) -> None:
    """The attnbook model's weights in the plain model (so both compute the same function)."""
    with torch.no_grad():
        plain.wte.weight.copy_(model.embed.embedding.weight)
        plain.wpe.copy_(model.positions.learned.weight)
        for ours, blk in zip(model.layers, plain.blocks):
            a = ours.self_attn
            blk.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            blk.qkv.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            for dst, src in ((blk.proj, a.out_proj), (blk.fc1, ours.ffn.linear1),
                             (blk.fc2, ours.ffn.linear2), (blk.ln1, ours.norm1), (blk.ln2, ours.norm2)):
                dst.load_state_dict(src.state_dict())
        plain.ln_f.load_state_dict(model.norm.state_dict())
        plain.head.load_state_dict(model.out.state_dict())


def chapter_model() -> DecoderOnly:
    return DecoderOnly(V, E, H, L, max_len=C, positional="learned", activation="gelu")


def training(repeats: int, steps: int) -> tuple[list[str], float]:
    torch.manual_seed(0)
    ours = chapter_model()
    plain = PlainGPT()
    copy_into_plain(ours, plain)
    n_ours, n_plain = (sum(p.numel() for p in m.parameters()) for m in (ours, plain))
    assert n_ours == n_plain, (n_ours, n_plain)
    probe = torch.randint(0, V, (2, C))
    assert torch.allclose(ours(probe), plain(probe), atol=1e-5), "the plain model differs"

    corpus = data.load_shakespeare()
    stream = iter(data.RandomWindows(corpus.train, C, BATCH, seed=0))
    batches = [next(stream) for _ in range(steps)]

    def trainer(model: nn.Module):
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        model.train()

        def run() -> None:
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
                loss.backward()
                opt.step()
        return run

    results = bench.compare({"attnbook": trainer(ours), "plain": trainer(plain)},
                            repeats=repeats, warmup=1, memory=False)
    t_ours, t_plain = (r.times for r in results)
    ratio = statistics.median(p / o for o, p in zip(t_ours, t_plain))  # steps/s ours / plain
    rows = [
        f"| training, {steps} steps (B={BATCH}, T={C}) | {name} | "
        f"{steps / statistics.median(r.times):.1f} steps/s | {mark} |"
        for name, r, mark in zip(("attnbook DecoderOnly", "plain PyTorch"), results, (f"{ratio:.3f}", "1"))
    ]
    return rows, ratio


def generation(repeats: int, new_tokens: int) -> tuple[list[str], dict[int, float]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=512, n_positions=512, n_embd=128, n_layer=4, n_head=4,
                     bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # random weights everywhere (biases and LayerNorms included)
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = gpt2_from_state_dict(hf.state_dict(), num_heads=cfg.n_head)
    rows, ratios = [], {}
    for B in (1, 8):
        prompt = torch.randint(1, cfg.vocab_size, (B, 8), generator=torch.Generator().manual_seed(B))
        mask = torch.ones_like(prompt)
        out: dict[str, torch.Tensor] = {}

        def run_hf(prompt=prompt, mask=mask, out=out) -> None:
            out["hf"] = hf.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                    do_sample=False, use_cache=True)

        def run_ours(prompt=prompt, out=out) -> None:
            out["ours"] = train.generate(ours, prompt, new_tokens, temperature=0.0, use_cache=True)

        results = bench.compare({"attnbook": run_ours, "transformers": run_hf},
                                repeats=repeats, warmup=1, memory=False)
        assert torch.equal(out["ours"], out["hf"]), f"batch {B}: the generated tokens differ"
        t_ours, t_hf = (r.times for r in results)
        ratios[B] = statistics.median(h / o for o, h in zip(t_ours, t_hf))
        for name, r in zip(("attnbook generate (KV cache)", "transformers generate(use_cache=True)"),
                           results):
            rate = B * new_tokens / statistics.median(r.times)
            mark = f"{ratios[B]:.3f}" if name.startswith("attnbook") else "1"
            rows.append(f"| greedy, B={B}, {new_tokens} new tokens | {name} | {rate:.0f} tokens/s | {mark} |")
    return rows, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, 10 steps, 64 tokens")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 9)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 9)
    steps, new_tokens = (10, 64) if args.quick else (20, 256)
    warnings.filterwarnings("ignore")
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{repeats} interleaved repeats\n")
    start = time.perf_counter()
    train_rows, train_ratio = training(repeats, steps)
    gen_rows, gen_ratios = generation(repeats, new_tokens)
    print("| comparison | implementation | median rate | ratio (median of repeats) |")
    print("|---|---|---:|---:|")
    print("\n".join(train_rows + gen_rows))
    print()
    targets = [(f"training steps/s >= 0.9x plain PyTorch: {train_ratio:.3f}x", train_ratio >= 0.9)]
    targets += [(f"cached greedy tokens/s >= 1.0x transformers at B={B}: {r:.3f}x", r >= 1.0)
                for B, r in gen_ratios.items()]
    for text, ok in targets:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
