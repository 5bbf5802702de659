"""The GPU checks in one command: kernels against float64, checkpoints against plain transformers, then speed.

    python -m bench.gpu_checks                       # on a GPU machine; report bench/results/gpu_checks.md
    python -m bench.gpu_checks --smoke --output /tmp/gpu_checks.md   # the same code path on CPU, tiny shapes

Stages, in order; a failed check stops the script (exit 1) before any speed is measured:

1. **Kernels.** `t5kit.attention.flex_biased_attention` (FlexAttention with T5's position bias in the score_mod),
   the GPU training path of the default `blocked` attention, at T5-base shapes in bf16: encoder self-attention
   (512 x 512), decoder causal self-attention (114 x 114), cross-attention (114 x 512). Output and the q, k, v and
   bias gradients are compared with a float64 computation of softmax(q k^T + bias) v; PyTorch's SDPA with the bias
   as a float mask gets the same comparison. A kernel passes when its largest relative error is at most twice
   SDPA's plus 1e-3. On CPU (--smoke) only the forward is checked: FlexAttention has no CPU backward, and the
   model check below runs the CPU default path (the blocked kernel) instead.
2. **Model.** T5 v1.1 (`--model_config`, random init), one training-mode forward and backward under bf16 autocast
   on the default path and with `sdpa`, both against the fp32 `sdpa` model: the default path's loss and gradient
   errors must be at most twice SDPA's plus 1e-3. Then `save_pretrained` and a plain
   `T5ForConditionalGeneration.from_pretrained` (transformers' own attention): evaluation logits equal the saved
   model's to bf16 tolerance.
3. **Pre-training speed.** `bench.pretrain_throughput` at nanoT5's batch (T5-base, 128 x 512 input / 114 target
   tokens; --smoke: `tiny`, 4 x 64): this toolkit's default path (on a GPU: FlexAttention and torch.compile), the
   same without compilation, and the plain Seq2SeqTrainer recipe, with MFU against the bf16 peak measured in the
   same run. The corpus: every .txt under the shared data's corpus folder (T5_SHARED_DATA) or --train_files.

Not measured here yet: fine-tuning milliseconds per step.

The report starts with a table of every check and its errors, then the throughput report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

import torch  # noqa: E402
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402

from t5kit import attention  # noqa: E402
from t5kit.modeling import PRESETS, V1_1_COMMON  # noqa: E402

BASE_SHAPES = {  # name: (batch, heads, q_len, k_len, head_dim, causal), T5-base at nanoT5's lengths
    "encoder self-attention": (8, 12, 512, 512, 64, False),
    "decoder self-attention (causal)": (8, 12, 114, 114, 64, True),
    "cross-attention": (8, 12, 114, 512, 64, False),
}
SMOKE_SHAPES = {
    "encoder self-attention": (2, 4, 32, 32, 16, False),
    "decoder self-attention (causal)": (2, 4, 12, 12, 16, True),
    "cross-attention": (2, 4, 12, 32, 16, False),
}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def passes(error: float, sdpa_error: float) -> bool:
    return error <= 2 * sdpa_error + 1e-3


def check_kernel(shape: tuple, device: str, backward: bool, seed: int = 0) -> dict:
    """Largest relative error (output and, with `backward`, the four gradients) of flex and of SDPA vs float64."""
    batch, heads, q_len, k_len, head_dim, causal = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def randn(*size, scale=1.0):
        return (scale * torch.randn(*size, generator=gen)).to(device)

    q, k, v = (randn(batch, heads, n, head_dim, scale=head_dim**-0.25) for n in (q_len, k_len, k_len))
    q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    bias = randn(1, heads, q_len, k_len, scale=2.0)
    grad = randn(batch, heads, q_len, head_dim).to(torch.bfloat16)
    blocked = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu_(1) if causal else None

    def run(fn, dtype):
        leaves = [t.detach().to(dtype).requires_grad_(backward) for t in (q, k, v)]
        b = bias.detach().to(torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_(backward)
        out = fn(*leaves, b)
        if not backward:
            return [out.detach()]
        out.backward(grad.to(out.dtype))
        return [out.detach()] + [t.grad for t in (*leaves, b)]

    def math(q_, k_, v_, b_):
        scores = q_ @ k_.transpose(-1, -2) + b_
        if blocked is not None:
            scores = scores.masked_fill(blocked, float("-inf"))
        return torch.softmax(scores, -1) @ v_

    def sdpa(q_, k_, v_, b_):
        mask = b_.to(q_.dtype) if blocked is None else b_.to(q_.dtype).masked_fill(blocked, float("-inf"))
        return torch.nn.functional.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=1.0)

    def flex(q_, k_, v_, b_):
        return attention.flex_biased_attention(q_, k_, v_, b_, causal=causal)

    want = run(math, torch.float64)
    errors = {}
    for name, fn in (("flex", flex), ("sdpa", sdpa)):
        got = run(fn, torch.bfloat16)
        errors[name] = max(relative_error(g, w) for g, w in zip(got, want))
    return errors


def t5_config(name: str) -> T5Config:
    return T5Config(**{**V1_1_COMMON, **PRESETS[name]}, vocab_size=32128, dropout_rate=0.0, decoder_start_token_id=0)


def check_model(name: str, device: str, batch: int, input_length: int, target_length: int) -> dict:
    """Loss/gradient errors under bf16 autocast (default path and sdpa) against fp32 sdpa, and the reload check."""
    attention.register()
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(t5_config(name)).to(device).train()
    gen = torch.Generator(device="cpu").manual_seed(1)
    data = dict(
        input_ids=torch.randint(2, 32000, (batch, input_length), generator=gen).to(device),
        labels=torch.randint(2, 32000, (batch, target_length), generator=gen).to(device),
    )

    def loss_and_grads(implementation: str, bf16: bool):
        model.set_attn_implementation(implementation)
        model.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**data, use_cache=False).loss
        loss.backward()
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
        return loss.item(), grads

    ref_loss, ref_grads = loss_and_grads("sdpa", bf16=False)
    result = {}
    for implementation in ("sdpa", attention.NAME):
        loss, grads = loss_and_grads(implementation, bf16=True)
        result[implementation] = (abs(loss - ref_loss), ((grads - ref_grads).norm() / ref_grads.norm()).item())
    model.zero_grad()
    model.eval().set_attn_implementation(attention.NAME)
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        model.save_pretrained(folder)
        plain = T5ForConditionalGeneration.from_pretrained(folder).to(device).eval()
        short = {key: value[:2] for key, value in data.items()}
        with torch.autocast(device, dtype=torch.bfloat16):
            saved = model(**short).logits.float()
            reloaded = plain(**short).logits.float()
    result["reload"] = relative_error(reloaded, saved.double())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on whatever device there is (CPU: no "
                        "kernel backward); checks that the script runs, measures nothing worth reporting")  # fmt: skip
    parser.add_argument("--output", default=str(common.RESULTS_DIR / "gpu_checks.md"))
    parser.add_argument("--work_dir", default=str(common.WORK_DIR / "gpu_checks"))
    parser.add_argument("--train_files", nargs="+", help="corpus for the speed stage (default: the shared corpus)")
    parser.add_argument("--no_speed", action="store_true", help="stop after the checks")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no GPU found: run with --smoke to check the script on CPU")
    started = time.perf_counter()
    lines = ["## GPU checks: kernels, checkpoints, pre-training speed", ""]
    command = " ".join(["python -m bench.gpu_checks", *(argv if argv is not None else sys.argv[1:])])
    lines.append(f"Command: `{command}`")
    lines += ["", "| check | error (flex / default path) | error (sdpa) | passes |", "|---|---:|---:|---|"]
    ok = True
    backward = device != "cpu"
    for name, shape in (SMOKE_SHAPES if args.smoke else BASE_SHAPES).items():
        errors = check_kernel(shape, device, backward)
        good = passes(errors["flex"], errors["sdpa"])
        ok &= good
        what = "output and gradients" if backward else "output"
        lines.append(f"| kernel: {name}, {what} | {errors['flex']:.2e} | {errors['sdpa']:.2e} | {good} |")
        print(lines[-1], flush=True)
    if backward or args.smoke:  # on CPU (--smoke) the default path is the blocked kernel, not FlexAttention
        name, shape = ("tiny", (2, 64, 16)) if args.smoke else ("base", (4, 512, 114))
        model = check_model(name, device, *shape)
        for what, index in (("loss", 0), ("gradients (relative norm)", 1)):
            good = passes(model[attention.NAME][index], model["sdpa"][index])
            ok &= good
            row = f"| model `{name}`, bf16 vs fp32: {what} | {model[attention.NAME][index]:.2e} |"
            lines.append(f"{row} {model['sdpa'][index]:.2e} | {good} |")
        good = model["reload"] <= 2e-2
        ok &= good
        reload = f"{model['reload']:.2e}"
        lines.append(f"| `save_pretrained` -> plain `from_pretrained`: eval logits | {reload} | | {good} |")
        print("\n".join(lines[-3:]), flush=True)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not ok:
        lines += ["", "**A check failed: no speed is reported.**"]
        output.write_text("\n".join(lines) + "\n")
        print(f"a check failed; report: {output}")
        return 1
    if args.no_speed:
        output.write_text("\n".join(lines) + "\n")
        return 0

    from bench import pretrain_throughput

    speed_md = Path(args.work_dir) / "pretrain_throughput.md"
    size = ["--model_config", "tiny", "--batch_size", "4", "--input_length", "64", "--vocab_size", "1000"]
    if not args.smoke:
        size = ["--model_config", "base", "--batch_size", "128", "--input_length", "512"]
    steps = ["--steps", "2", "--warmup_steps", "1"] if args.smoke else ["--steps", "8", "--warmup_steps", "3"]
    pretrain_throughput.main([
        *size, *steps, "--max_discarded", "0", "--rounds", "1", "--compile", "off" if args.smoke else "default",
        "--max_contention", "1.0",
        "--wait_idle_s", "0", "--output", str(speed_md), "--work_dir", args.work_dir,
        *(["--train_files", *args.train_files] if args.train_files else []),
    ])  # fmt: skip
    lines += ["", speed_md.read_text(), "", f"_{time.perf_counter() - started:.0f} s in all_"]
    output.write_text("\n".join(lines) + "\n")
    print(f"report: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
