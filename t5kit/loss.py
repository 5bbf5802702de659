"""Token cross-entropy over the vocabulary in row chunks, without fp32 copies of the whole logits tensor.

T5's own loss (`CrossEntropyLoss` on the LM head's output) under bf16 autocast first copies the bf16 logits to fp32,
writes fp32 log-probabilities, and in backward writes an fp32 zero tensor, the fp32 gradient, and a bf16 copy of it:
with a 32k vocabulary that is ~1 GB of memory traffic per step for 8 x 114 targets, ~12% of a `mini` pre-training
step on 2 CPU cores (profile in bench/results/pretrain_throughput.md). Here each chunk of rows is upcast, reduced and
differentiated while it is in cache. The gradient (softmax - one-hot, per token) is computed in the forward pass,
stored in the logits' dtype, and only scaled in backward.
"""

from __future__ import annotations

import torch

from data_collators import LABEL_PAD_ID as IGNORE_INDEX  # -100: no target at this position

# Logits per chunk: 4 MB of fp32 on CPU (cache-sized; 0.25-16 MB measured within noise of each other), 256 MB on
# accelerators, where each chunk costs ~10 kernel launches and there is no small cache to fit.
CHUNK_ELEMENTS = {"cpu": 1 << 20}
DEFAULT_CHUNK_ELEMENTS = 1 << 26


class _TokenCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, divisor):
        rows, vocab = logits.shape
        chunk = max(1, CHUNK_ELEMENTS.get(logits.device.type, DEFAULT_CHUNK_ELEMENTS) // vocab)
        keep = ctx.needs_input_grad[0]
        grad = torch.empty_like(logits) if keep else None
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, rows, chunk):
            block = logits[start : start + chunk].to(torch.float32, copy=True)  # a copy even for fp32 logits
            target = labels[start : start + chunk]
            valid = target != IGNORE_INDEX
            safe = target.masked_fill(~valid, 0)
            picked = block.gather(1, safe[:, None])
            peak = block.amax(dim=-1, keepdim=True)
            exps = block.sub_(peak).exp_()  # in place of the upcast chunk
            sums = exps.sum(dim=-1, keepdim=True)
            total += ((peak + sums.log() - picked).squeeze(1) * valid).sum()
            if keep:  # d(loss)/d(logits) = (softmax - one-hot) / divisor, in fp32 before rounding to the dtype
                weight = (valid / divisor)[:, None]
                exps.mul_(weight / sums)
                exps.scatter_add_(1, safe[:, None], -weight)
                grad[start : start + chunk] = exps
        ctx.save_for_backward(grad)
        return total / divisor

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        # grad_loss is usually exactly 1 (loss.backward()): then the stored gradient is the answer, and skipping the
        # multiply saves a pass over, and an allocation of, the logits-sized gradient. Reading it is free on CPU; on
        # accelerators it would cost a host-device sync, so there the multiply always runs.
        if grad_loss.device.type == "cpu" and grad_loss.item() == 1.0:
            return grad, None, None
        return grad * grad_loss, None, None


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None = None):
    """Summed cross-entropy of `logits` (..., vocab) against `labels` (...; IGNORE_INDEX = no target), divided by
    `num_items` (the Trainer's token count over the accumulated batch) or, when None, by this batch's count of
    targets: then it equals `torch.nn.functional.cross_entropy(logits, labels)` (mean, ignore_index=-100)."""
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1).to(logits.device)
    if num_items is None:
        num_items = (labels != IGNORE_INDEX).sum()
    divisor = torch.as_tensor(num_items, device=logits.device).float()
    with torch.autocast(logits.device.type, enabled=False):
        return _TokenCrossEntropy.apply(logits, labels, divisor)
